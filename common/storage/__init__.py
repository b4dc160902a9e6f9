"""Object storage for subject images, checkpoints and reports: S3 or a local directory, one interface."""

from __future__ import annotations

import logging
import secrets

from common.settings import ProcessRole, Settings
from common.storage.base import (
    ChecksumMismatch,
    ListedObject,
    ObjectNotFound,
    Storage,
    StorageError,
    StoredObject,
    sha256_file,
)
from common.storage.local import LocalStorage
from common.storage.s3 import S3Storage

log = logging.getLogger(__name__)

__all__ = [
    "ChecksumMismatch",
    "ListedObject",
    "LocalStorage",
    "ObjectNotFound",
    "S3Storage",
    "Storage",
    "StorageError",
    "StoredObject",
    "sha256_file",
    "storage_from_settings",
]


def storage_from_settings(settings: Settings, *, role: ProcessRole) -> Storage:
    """The backend the settings name, for `role`'s process (S3: with that process's own credentials, see
    `Settings.s3_credentials`); S3 creates its bucket if needed and allowed."""
    if settings.storage_backend == "s3":
        access_key, secret_key = settings.s3_credentials(role)
        storage = S3Storage(
            bucket=settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            public_endpoint_url=settings.s3_public_endpoint_url,
            access_key=access_key,
            secret_key=secret_key,
            region=settings.s3_region,
            multipart_threshold=settings.s3_multipart_threshold_bytes,
            multipart_chunk=settings.s3_multipart_chunk_bytes,
        )
        storage.ensure_bucket()
        return storage
    if settings.signing_secret is None:
        log.warning("PERSGUARD_SIGNING_SECRET is unset: download links will not survive a restart")
        secret = secrets.token_bytes(32)
    else:
        secret = settings.signing_secret.get_secret_value().encode()
    return LocalStorage(settings.storage_dir, secret)
