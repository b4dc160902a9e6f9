"""RFC 9457 problem details: every error the API returns says what went wrong and what to fix."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount

from api.services.errors import (
    Conflict,
    DomainError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    Unavailable,
)

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "https://persguard.dev/problems/"


class Problem(BaseModel):
    """The problem+json body (RFC 9457); `errors` lists field errors of a 422."""

    type: str = Field(description="URI naming the kind of problem")
    title: str
    status: int
    detail: str = Field(description="What went wrong and how to fix it")
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None
    quota: str | None = Field(
        None, description="of a 429 quota-exceeded: the limit reached (active_jobs, subjects, subject_bytes)"
    )


class ProblemError(Exception):
    """Raise from anywhere in a request to answer with a problem."""

    def __init__(
        self, status: int, detail: str, *, kind: str | None = None, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.kind = kind or HTTPStatus(status).phrase.lower().replace(" ", "-")
        self.headers = headers
        self.extra = extra


def problem_response(
    request: Request,
    status: int,
    detail: str,
    *,
    kind: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """A problem+json response for `request`."""
    kind = kind or HTTPStatus(status).phrase.lower().replace(" ", "-")
    body = {
        "type": TYPE_BASE + kind,
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        **{k: v for k, v in extra.items() if v is not None},
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _validation_detail(errors: list[dict[str, Any]]) -> str:
    first = errors[0]
    if first.get("type") == "json_invalid":
        ctx = first.get("ctx", {})
        return f"the request body is not valid JSON ({ctx.get('error', 'parse error')}); send a JSON object"
    parts = [f"{_location(e['loc'])}: {e['msg']}" for e in errors[:5]]
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "fix these fields: " + "; ".join(parts) + more


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return problem_response(request, exc.status, exc.detail, kind=exc.kind, headers=exc.headers, **exc.extra)


DOMAIN_STATUS: dict[type[DomainError], int] = {
    NotFound: 404,
    Conflict: 409,
    PermissionDenied: 403,
    InvalidRequest: 422,
    QuotaExceeded: 429,
    Unavailable: 503,
}


def domain_status(exc: DomainError) -> int | None:
    """The HTTP status of a domain error: that of its nearest class in DOMAIN_STATUS."""
    return next((DOMAIN_STATUS[cls] for cls in type(exc).__mro__ if cls in DOMAIN_STATUS), None)


async def _on_domain(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    status = domain_status(exc)
    if status is None:  # a kind of refusal no status was chosen for: a bug, answered as one
        return await _on_unexpected(request, exc)
    if isinstance(exc, QuotaExceeded):
        headers = {"Retry-After": str(exc.retry_after_s)}
        return problem_response(request, status, exc.message, kind=exc.code, headers=headers, quota=exc.quota)
    return problem_response(request, status, exc.message, kind=exc.code)


UNPARSEABLE_BODY = "There was an error parsing the body"  # FastAPI's 400 for a body its parser raised on
FORM_MEDIA_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


ROUTED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at the request's path. Starlette's 405 names only the methods of the first
    route whose path matched, while a path such as `/v1/models` is served by one route per method. Mounted apps
    (static files) match any method and answer their own 405s: they are left out."""
    routes = [route for route in request.app.router.routes if not isinstance(route, Mount)]
    return [
        method
        for method in ROUTED_METHODS
        if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)
    ]


def _unparseable_json(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """A JSON body the JSON parser raised on (not UTF-8, nested too deeply) is invalid JSON like any other: a 422
    validation error, as FastAPI answers a syntax error, not an undocumented 400."""
    cause = exc.__cause__
    why = {UnicodeDecodeError: "it is not UTF-8 text", RecursionError: "it nests too deeply"}.get(
        type(cause), "parse error"
    )
    errors = [{"loc": ["body"], "msg": "JSON decode error", "type": "json_invalid"}]
    detail = f"the request body is not valid JSON ({why}); send a JSON object"
    return problem_response(request, 422, detail, kind="validation-error", errors=errors)


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    headers = getattr(exc, "headers", None)
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no endpoint at {request.url.path}; see /docs for the API"
    elif exc.status_code == 400 and detail == UNPARSEABLE_BODY:
        if not request.headers.get("content-type", "").lower().startswith(FORM_MEDIA_TYPES):
            return _unparseable_json(request, exc)
        detail = "the request body could not be parsed; send well-formed multipart/form-data"
    elif exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}; see /docs for the allowed methods"
        if allowed := allowed_methods(request):
            headers = {**(headers or {}), "Allow": ", ".join(allowed)}
    return problem_response(request, exc.status_code, detail, headers=headers)


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [{"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    raw = list(exc.errors())
    return problem_response(request, 422, _validation_detail(raw), kind="validation-error", errors=errors)


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(request, 500, "the server failed unexpectedly; retry later or report it with the time")


def install_problem_handlers(app: FastAPI) -> None:
    """Route every error the app can raise to a problem+json response."""
    app.add_exception_handler(ProblemError, _on_problem)
    app.add_exception_handler(DomainError, _on_domain)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(Exception, _on_unexpected)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries declaring problem+json bodies for `statuses`."""
    return {
        status: {
            "model": Problem,
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }
