"""The client's exceptions: one per kind of refusal, each carrying the server's problem+json detail."""

from __future__ import annotations

from typing import Any


class PersGuardError(Exception):
    """Anything the client refuses or the service answers with an error."""


class ConfigurationError(PersGuardError):
    """The client lacks what it needs to talk to the service (its URL or API key)."""


class ApiError(PersGuardError):
    """An error answer of the API (RFC 9457 problem+json): `status`, `kind` (the problem's type, e.g.
    `not-found`), `detail` (what went wrong and how to fix it), and the whole `problem` body."""

    def __init__(self, status: int, detail: str, *, kind: str = "", problem: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {kind or 'error'}: {detail}")
        self.status = status
        self.kind = kind
        self.detail = detail
        self.problem = problem or {}


class Unauthorized(ApiError):
    """401: no key, a malformed key, or a revoked or unknown one."""


class Forbidden(ApiError):
    """403: the key's role may not do this."""


class NotFound(ApiError):
    """404: no such resource, or another tenant's."""


class Conflict(ApiError):
    """409: the resource is in a state that forbids this, or an Idempotency-Key was reused with another body."""


class PayloadTooLarge(ApiError):
    """413: an upload or body over the service's limits."""


class InvalidRequest(ApiError):
    """422 (and other 4xx): the request names a bad field; `problem["errors"]` lists field errors when given."""


class RateLimited(ApiError):
    """429: too many requests, or a tenant quota reached; `retry_after_s` is the server's Retry-After."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        kind: str = "",
        problem: dict[str, Any] | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(status, detail, kind=kind, problem=problem)
        self.retry_after_s = retry_after_s


class ServiceUnavailable(ApiError):
    """503: the service or one of its backing services is down; retry later."""


class ServerError(ApiError):
    """Any other 5xx."""


class ChecksumMismatch(PersGuardError):
    """A downloaded checkpoint's sha256 is not the one the API published; nothing was kept."""

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"downloaded checkpoint has sha256 {actual}, the API published {expected}; file discarded")
        self.expected = expected
        self.actual = actual


class JobFailed(PersGuardError):
    """A job ended `failed` or `cancelled`; `job` is its last state."""

    def __init__(self, job: Any) -> None:
        super().__init__(f"job {job.id} {job.status}: {job.error or 'no error given'}")
        self.job = job


class WaitTimeout(PersGuardError):
    """A wait ran out of time before the job (or its verification) finished."""


_BY_STATUS: dict[int, type[ApiError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    429: RateLimited,
    503: ServiceUnavailable,
}


def error_class(status: int) -> type[ApiError]:
    """The exception class of an error status."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return ServerError if status >= 500 else InvalidRequest
