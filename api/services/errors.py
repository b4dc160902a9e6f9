"""What the services refuse, in the service's own terms; api/errors.py maps each kind to an HTTP problem.

Each error carries a message that says what went wrong and how to fix it, and a `code` naming the kind of refusal.
Subclasses refine the code of a base class here; callers map errors by those base classes.
"""

from __future__ import annotations


class DomainError(Exception):
    """A request the service refuses."""

    code = "domain-error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(DomainError):
    """The thing does not exist, or the caller may not know that it does."""

    code = "not-found"


class Conflict(DomainError):
    """The request contradicts the current state of what it addresses."""

    code = "conflict"


class IdempotencyConflict(Conflict):
    code = "idempotency-conflict"


class InvalidState(Conflict):
    code = "invalid-state"


class PermissionDenied(DomainError):
    """The caller's role may not ask for this."""

    code = "forbidden"


class InvalidRequest(DomainError):
    """The request is well-formed but asks for something that cannot be done."""

    code = "validation-error"


class UnknownSubject(InvalidRequest):
    code = "unknown-subject"


class UnknownModel(InvalidRequest):
    code = "unknown-model"


class Unavailable(DomainError):
    """A backing service is down; the same request may succeed later."""

    code = "unavailable"


class StorageUnavailable(Unavailable):
    code = "storage-unavailable"


class QuotaExceeded(DomainError):
    """The tenant is at one of its limits (settings): freeing what the message names, or waiting, lets it through.

    `quota` names the limit; `retry_after_s` is when asking again may help."""

    code = "quota-exceeded"

    def __init__(self, message: str, *, quota: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.quota = quota
        self.retry_after_s = retry_after_s
