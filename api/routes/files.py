"""`/v1/files`: serves local-storage objects behind signed, expiring URLs (embedded mode's presigned GET)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from api.deps import StorageDep
from api.errors import ProblemError
from common.storage import LocalStorage

router = APIRouter(tags=["files"], include_in_schema=False)


@router.get("/v1/files", name="download_file")
def download_file(
    storage: StorageDep,
    key: Annotated[str, Query(max_length=300)],
    expires: Annotated[int, Query()],
    sig: Annotated[str, Query(max_length=128)],
    filename: Annotated[str | None, Query(max_length=200)] = None,
) -> FileResponse:
    """The object `key` if `sig` signs `key`, `expires` and `filename` and `expires` has not passed."""
    if not isinstance(storage, LocalStorage):
        raise ProblemError(404, "downloads are served by the object store; use the presigned URL", kind="not-found")
    if not storage.verify_signature(key, expires, sig, filename):
        raise ProblemError(
            403,
            "this download link is invalid or expired; request a new one from GET /v1/checkpoints/{id}/download",
            kind="forbidden",
        )
    path = storage.path_of(key)
    if not path.is_file():
        raise ProblemError(404, "the file behind this link no longer exists", kind="not-found")
    return FileResponse(path, filename=filename, media_type="application/octet-stream")
