"""A Python client of the PersGuard protection API (docs/CLIENT.md); `persguard client ...` is its command line."""

from persguard_client.client import PersGuardClient, folder_images, mask_key
from persguard_client.errors import (
    ApiError,
    ChecksumMismatch,
    ConfigurationError,
    Conflict,
    Forbidden,
    InvalidRequest,
    JobFailed,
    NotFound,
    PayloadTooLarge,
    PersGuardError,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    Unauthorized,
    WaitTimeout,
)
from persguard_client.models import Checkpoint, Job, Subject
from persguard_client.protection import behaviour, protection_body
from persguard_client.retry import RetryPolicy

__all__ = [
    "ApiError",
    "Checkpoint",
    "ChecksumMismatch",
    "ConfigurationError",
    "Conflict",
    "Forbidden",
    "InvalidRequest",
    "Job",
    "JobFailed",
    "NotFound",
    "PayloadTooLarge",
    "PersGuardClient",
    "PersGuardError",
    "RateLimited",
    "RetryPolicy",
    "ServerError",
    "ServiceUnavailable",
    "Subject",
    "Unauthorized",
    "WaitTimeout",
    "behaviour",
    "folder_images",
    "mask_key",
    "protection_body",
]
