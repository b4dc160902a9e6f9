"""What can go wrong with a job, and which failures are worth a retry.

Transient: storage, broker or database unreachable (retried with backoff). Permanent: a bad spec or bad data
(the job fails at once with the message), out of memory (reported as such), anything else (fails with the
exception's type and message).
"""

from __future__ import annotations

import enum

from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, InterfaceError
from sqlalchemy.exc import OperationalError as SqlOperationalError

from common.storage import ChecksumMismatch, ObjectNotFound, StorageError


class JobCancelled(Exception):
    """Raised by a protect_fn (or found after it returns) when the job's cancel flag is set."""


class JobInputError(RuntimeError):
    """The job's inputs cannot be resolved (a subject was deleted, an image is missing or corrupt)."""


class LeaseLost(RuntimeError):
    """Another runner took the job over (our lease ran out); this runner must stop without writing."""


class TransientJobError(RuntimeError):
    """A failure worth retrying later: the job goes back to the queue, with its training state kept."""


class FailureKind(enum.StrEnum):
    TRANSIENT = "transient"
    BAD_INPUT = "bad_input"
    OUT_OF_MEMORY = "out_of_memory"
    FATAL = "fatal"


def _broker_errors() -> tuple[type[BaseException], ...]:
    try:  # the broker client exists only with the service extras installed
        from kombu.exceptions import OperationalError as KombuOperationalError
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError
    except ImportError:  # pragma: no cover - embedded installs without celery
        return ()
    return (KombuOperationalError, RedisConnectionError, RedisTimeoutError)


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    name = type(exc).__name__
    return name == "OutOfMemoryError" or (isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


def classify(exc: BaseException) -> FailureKind:
    """Which kind of failure `exc` is (see the module docstring)."""
    if isinstance(exc, TransientJobError):
        return FailureKind.TRANSIENT
    if isinstance(exc, JobInputError | ValidationError | ObjectNotFound | ChecksumMismatch):
        return FailureKind.BAD_INPUT
    if isinstance(exc, (StorageError, ConnectionError, TimeoutError, *_broker_errors())):
        return FailureKind.TRANSIENT
    if isinstance(exc, SqlOperationalError | InterfaceError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    ):
        return FailureKind.TRANSIENT
    if _is_out_of_memory(exc):
        return FailureKind.OUT_OF_MEMORY
    return FailureKind.FATAL


def describe(exc: BaseException) -> str:
    """The job's error message for a permanent failure."""
    kind = classify(exc)
    if type(exc).__name__ == "SoftTimeLimitExceeded":
        return "time limit exceeded: the job ran longer than PERSGUARD_JOB_SOFT_TIME_LIMIT_S"
    if kind is FailureKind.OUT_OF_MEMORY:
        return f"out of memory: {type(exc).__name__}: {exc}"
    if isinstance(exc, JobInputError):
        return str(exc)
    if isinstance(exc, ValidationError):
        return f"invalid protection spec: {exc.errors()[0]['msg']}"
    return f"{type(exc).__name__}: {exc}"
