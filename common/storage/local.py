"""Local-directory storage: the embedded default. Downloads go through a signed, expiring API URL."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlencode

from common.storage.base import (
    CHUNK,
    ChecksumMismatch,
    ListedObject,
    ObjectNotFound,
    StorageError,
    StoredObject,
    check_key,
    sha256_file,
)

DOWNLOAD_PATH = "/v1/files"
TEMP_PREFIX = ".upload-"


class LocalStorage:
    """Objects are files under `root`; writes are atomic (temporary file, then rename)."""

    def __init__(self, root: Path, signing_secret: bytes) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._secret = signing_secret

    def path_of(self, key: str) -> Path:
        return self.root / check_key(key)

    def _write(self, key: str, write: Callable[[BinaryIO], object]) -> StoredObject:
        target = self.path_of(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=TEMP_PREFIX)
        try:
            with os.fdopen(fd, "wb") as handle:
                write(handle)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return StoredObject(key=key, size=target.stat().st_size, sha256=sha256_file(target))

    def put_bytes(self, key: str, data: bytes) -> StoredObject:
        return self._write(key, lambda handle: handle.write(data))

    def put_file(self, key: str, path: Path) -> StoredObject:
        def copy(handle: BinaryIO) -> None:
            with path.open("rb") as source:
                shutil.copyfileobj(source, handle, CHUNK)

        return self._write(key, copy)

    def get_to_file(self, key: str, dest: Path, expected_sha256: str | None = None) -> Path:
        source = self.path_of(key)
        if not source.is_file():
            raise ObjectNotFound(f"no object {key!r} in local storage")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, dest)
        if expected_sha256 and sha256_file(dest) != expected_sha256:
            dest.unlink()
            raise ChecksumMismatch(f"object {key!r} does not match its recorded sha256")
        return dest

    def open(self, key: str) -> BinaryIO:
        try:
            return self.path_of(key).open("rb")
        except FileNotFoundError as exc:
            raise ObjectNotFound(f"no object {key!r} in local storage") from exc

    def exists(self, key: str) -> bool:
        return self.path_of(key).is_file()

    def delete(self, key: str) -> None:
        self.path_of(key).unlink(missing_ok=True)

    def presigned_get_url(self, key: str, expires_in: int, filename: str | None = None) -> str:
        """A path (`/v1/files?...`) the API serves; the caller puts its public base URL in front."""
        expires = int(time.time()) + expires_in
        query = {"key": check_key(key), "expires": expires, "sig": self.sign(key, expires, filename or None)}
        if filename:
            query["filename"] = filename
        return f"{DOWNLOAD_PATH}?{urlencode(query)}"

    def sign(self, key: str, expires: int, filename: str | None = None) -> str:
        """HMAC of every parameter of a download link: the key, the expiry and the download's file name (or its
        absence), so that none can be changed or added."""
        message = json.dumps([key, expires, filename], ensure_ascii=True)
        return hmac.new(self._secret, message.encode(), hashlib.sha256).hexdigest()

    def verify_signature(self, key: str, expires: int, sig: str, filename: str | None = None) -> bool:
        """True if `sig` was made by this storage for `key`, `expires` and `filename` and `expires` has not passed.
        Any malformed `sig` (non-ASCII included) is simply not valid."""
        expected = self.sign(key, expires, filename or None).encode()
        return expires >= int(time.time()) and hmac.compare_digest(expected, sig.encode("utf-8", "replace"))

    def check(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise StorageError(f"storage directory {self.root} is not writable")

    def list_objects(self, prefix: str) -> Iterator[ListedObject]:
        for path in sorted(self.root.rglob("*")):
            if not path.is_file() or path.name.startswith(TEMP_PREFIX):
                continue
            key = path.relative_to(self.root).as_posix()
            if key.startswith(prefix):
                stat = path.stat()
                yield ListedObject(key, stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC))

    def abort_stale_uploads(self, older_than: datetime) -> int:
        removed = 0
        for path in self.root.rglob(f"{TEMP_PREFIX}*"):
            if datetime.fromtimestamp(path.stat().st_mtime, UTC) < older_than:
                path.unlink(missing_ok=True)
                removed += 1
        return removed
