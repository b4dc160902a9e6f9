"""What can go wrong with a job, and which failures are worth a retry.

Transient: storage, broker or database unreachable (retried with backoff). Permanent: a bad spec or bad data
(the job fails at once), out of memory, anything else (an internal error).

What a job row (`error`) or a verification report (`summary.error`) says is `describe(exc)`: a stable message per
kind of failure, written for the people using the service. It never carries an exception's own text, which can
name hosts, buckets, paths or credentials; the runners log that, with the job or checkpoint id.
"""

from __future__ import annotations

import enum

from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, InterfaceError
from sqlalchemy.exc import OperationalError as SqlOperationalError

from common.storage import ChecksumMismatch, ObjectNotFound, StorageError
from persguard_core.images import UnreadableImage
from persguard_core.judge.base import NoJudge

INTERNAL_ERROR = "internal error: the job failed unexpectedly; an admin can find the details in the service's logs"
OUT_OF_MEMORY = "out of memory: the job needed more memory than its worker has"
TIME_LIMIT = "time limit exceeded: the job ran longer than PERSGUARD_JOB_SOFT_TIME_LIMIT_S"
UNREADABLE_IMAGE = "an image of the job cannot be read as an image (it is damaged, or not a PNG, JPEG or WebP file)"
STORED_FILE_UNUSABLE = "a stored file of the job is missing or does not match its recorded sha256"
NO_JUDGE = (
    "the checkpoint cannot be verified: the shipped judge scores only images of the built-in model's size (the "
    "built-in model and models derived from it)"
)


class JobCancelled(Exception):
    """Raised by a protect_fn (or found after it returns) when the job's cancel flag is set."""


class JobInputError(RuntimeError):
    """The job's inputs cannot be resolved (a subject was deleted, an image is missing or corrupt). Its message is
    shown to users as it is: it names only the job's own subjects and images, never an underlying error."""


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
    if isinstance(exc, JobInputError | ValidationError | ObjectNotFound | ChecksumMismatch | UnreadableImage | NoJudge):
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


def _unavailable(exc: BaseException) -> str:
    """Which backing service a transient failure came from, in the user's terms."""
    if isinstance(exc, StorageError):
        return "storage is unavailable"
    if isinstance(exc, DBAPIError | InterfaceError):
        return "the database is unavailable"
    if isinstance(exc, _broker_errors()):
        return "the job queue is unavailable"
    return "a backing service is unavailable"


def describe(exc: BaseException) -> str:
    """The user-facing message of a failure: stable per kind, never the exception's own text (see the module
    docstring); log `exc` itself next to it."""
    kind = classify(exc)
    if type(exc).__name__ == "SoftTimeLimitExceeded":
        return TIME_LIMIT
    if kind is FailureKind.TRANSIENT:
        return _unavailable(exc)
    if kind is FailureKind.OUT_OF_MEMORY:
        return OUT_OF_MEMORY
    if isinstance(exc, JobInputError):
        return str(exc)
    if isinstance(exc, ValidationError):
        where = ".".join(str(part) for part in exc.errors()[0]["loc"])
        return f"invalid protection spec: {where}" if where else "invalid protection spec"
    if isinstance(exc, UnreadableImage):
        return UNREADABLE_IMAGE
    if isinstance(exc, NoJudge):
        return NO_JUDGE
    if isinstance(exc, ObjectNotFound | ChecksumMismatch):
        return STORED_FILE_UNUSABLE
    return INTERNAL_ERROR
