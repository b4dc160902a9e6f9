"""The storage interface: one contract, an S3 backend and a local-directory backend."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Protocol

CHUNK = 1024 * 1024


class StorageError(RuntimeError):
    """A storage operation failed (missing object, backend unreachable)."""


class ObjectNotFound(StorageError):
    """The key names no object."""


class ChecksumMismatch(StorageError):
    """The bytes read back do not have the sha256 recorded when they were written."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    sha256: str


@dataclass(frozen=True)
class ListedObject:
    key: str
    size: int
    last_modified: datetime


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_key(key: str) -> str:
    """Refuse keys that could escape a prefix or a directory (absolute, `..`, empty parts)."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in key:
        raise ValueError(f"invalid storage key {key!r}")
    return key


class Storage(Protocol):
    """Where subject images, checkpoints and reports live. Keys are `/`-separated relative paths."""

    def put_bytes(self, key: str, data: bytes) -> StoredObject:
        """Store `data` under `key`, recording its sha256."""
        ...

    def put_file(self, key: str, path: Path) -> StoredObject:
        """Store a file (multipart for large files on S3), recording its sha256."""
        ...

    def get_to_file(self, key: str, dest: Path, expected_sha256: str | None = None) -> Path:
        """Write the object to `dest`; raise ChecksumMismatch if `expected_sha256` is given and differs."""
        ...

    def open(self, key: str) -> BinaryIO:
        """A readable stream of the object."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Remove the object; a missing key is not an error."""
        ...

    def presigned_get_url(self, key: str, expires_in: int, filename: str | None = None) -> str:
        """A URL that downloads the object without an API key until it expires (relative for local)."""
        ...

    def check(self) -> None:
        """Raise StorageError if the backend cannot serve (readiness probe)."""
        ...

    def list_objects(self, prefix: str) -> Iterator[ListedObject]:
        """Every object whose key starts with `prefix`, with its size and last-modified time (UTC)."""
        ...

    def abort_stale_uploads(self, older_than: datetime) -> int:
        """Remove unfinished uploads (S3 multipart uploads, local temporary files) begun before `older_than`."""
        ...
