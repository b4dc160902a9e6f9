"""`/v1/subjects`: rights holders register the subjects to protect."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile

from api.deps import IdempotencyKey, QuotasDep, RightsHolderOrAdmin, SessionDep, SettingsDep, StorageDep
from api.errors import ProblemError, problem_responses
from api.images import ImageRejected, UploadLimits, check_count, check_size, validate_uploads
from api.pagination import PageDep, paginate
from api.schemas.common import NO_NUL, Page
from api.schemas.subjects import CLASS_NOUN_PATTERN, SubjectOut
from api.services import subjects as service
from common.models import Subject
from common.settings import Settings

router = APIRouter(prefix="/v1/subjects", tags=["subjects"], responses=problem_responses(401, 403, 422, 429))


def _limits(settings: Settings) -> UploadLimits:
    return UploadLimits(
        max_image_bytes=settings.max_image_bytes,
        max_image_pixels=settings.max_image_pixels,
        min_images=settings.min_images_per_subject,
        max_images=settings.max_images_per_subject,
    )


def _read_uploads(images: list[UploadFile], limits: UploadLimits) -> list[tuple[str, bytes]]:
    check_count(len(images), limits)
    files = []
    for index, upload in enumerate(images):
        filename = upload.filename or f"image {index + 1}"
        check_size(filename, upload.size or 0, limits)
        files.append((filename, upload.file.read()))
    return files


@router.post("", status_code=201, response_model=SubjectOut, responses=problem_responses(400, 409, 413, 415, 503))
def create_subject(
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    quotas: QuotasDep,
    principal: RightsHolderOrAdmin,
    name: Annotated[str, Form(min_length=1, max_length=100, pattern=NO_NUL, description="a label for the subject")],
    class_noun: Annotated[str, Form(max_length=50, pattern=CLASS_NOUN_PATTERN, description='e.g. "dog"')],
    images: Annotated[list[UploadFile] | None, File(description="3-20 PNG, JPEG or WebP images")] = None,
    idempotency_key: IdempotencyKey = None,
) -> Subject:
    """Register a subject from its images; refused uploads store nothing. With an Idempotency-Key, a replay (same
    form fields and files) returns the first subject instead of a new one. A tenant at its limit of subjects or of
    stored image bytes gets a 429 (see docs/API.md, "Limits")."""
    limits = _limits(settings)
    try:
        files = _read_uploads(images or [], limits)
        digest = service.request_hash(name, class_noun, files) if idempotency_key else None
        if digest and (earlier := service.find_replay(session, principal.tenant_id, idempotency_key, digest)):
            return earlier
        clean = validate_uploads(files, limits)
    except ImageRejected as exc:
        raise ProblemError(exc.status, str(exc), kind="invalid-upload") from exc
    return service.create_subject(session, storage, principal, name, class_noun, clean, quotas, idempotency_key, digest)


@router.get("", response_model=Page[SubjectOut])
def list_subjects(session: SessionDep, principal: RightsHolderOrAdmin, page: PageDep) -> dict:
    """Your tenant's subjects (all tenants' for admins), newest first."""
    stmt = service.visible_subjects(principal).order_by(Subject.created_at.desc(), Subject.id)
    return paginate(session, stmt, page, SubjectOut.model_validate)


@router.get("/{subject_id}", response_model=SubjectOut, responses=problem_responses(404))
def get_subject(subject_id: uuid.UUID, session: SessionDep, principal: RightsHolderOrAdmin) -> Subject:
    """One subject with its images' hashes and sizes."""
    return service.get_visible_subject(session, principal, subject_id)


@router.delete("/{subject_id}", status_code=204, responses=problem_responses(404))
def delete_subject(
    subject_id: uuid.UUID, session: SessionDep, storage: StorageDep, principal: RightsHolderOrAdmin
) -> Response:
    """Delete the subject's images from storage; unfinished jobs that use them are cancelled (see docs/API.md)."""
    subject = service.get_visible_subject(session, principal, subject_id)
    service.delete_subject(session, storage, principal, subject)
    return Response(status_code=204)
