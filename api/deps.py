"""Request dependencies: database session, storage, settings, the caller's key and role checks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.errors import ProblemError
from api.reads import Reads
from api.services.principal import Principal
from api.services.quotas import Quotas
from common.db import SessionFactory
from common.jobs import JobRunner
from common.keys import authenticate
from common.models import Role
from common.settings import Settings
from common.storage import Storage

bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer pgk_...`")


# Trivial dependencies are `async` so that FastAPI runs them on the event loop instead of a worker thread.


async def get_session(request: Request) -> AsyncIterator[Session]:
    """A session per request. Creating and closing one does no blocking work worth a thread (the first query,
    run by sync handlers in the threadpool, checks a connection out of the pool)."""
    with request.app.state.session_factory() as session:
        yield session


async def get_reads(request: Request) -> Reads:
    """For hot read-only handlers: their queries, batched onto a thread of their own (see api/reads.py)."""
    return request.app.state.reads


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_storage(request: Request) -> Storage:
    return request.app.state.storage


async def get_runner(request: Request) -> JobRunner:
    return request.app.state.runner


async def get_quotas(request: Request) -> Quotas:
    return request.app.state.quotas


SessionDep = Annotated[Session, Depends(get_session)]
ReadsDep = Annotated[Reads, Depends(get_reads)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
StorageDep = Annotated[Storage, Depends(get_storage)]
RunnerDep = Annotated[JobRunner, Depends(get_runner)]
QuotasDep = Annotated[Quotas, Depends(get_quotas)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        min_length=1,
        max_length=200,
        description="replaying a request with the same key and the same body returns what the first one made",
    ),
]


CHALLENGE = {"WWW-Authenticate": "Bearer"}
MISSING_KEY = "send an API key as `Authorization: Bearer <key>`"
UNKNOWN_KEY = "the API key is unknown or revoked; ask an admin for a new one"


def _lookup_principal(session_factory: SessionFactory, key: str) -> Principal:
    """The key's principal from the database (this also refreshes its last-used time); 401 if unknown or revoked."""
    with session_factory() as session:
        row = authenticate(session, key)
        if row is None:
            raise ProblemError(401, UNKNOWN_KEY, kind="unauthenticated", headers=CHALLENGE)
        return Principal(key_id=row.id, tenant_id=row.tenant_id, role=Role(row.role))


BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


async def get_principal(request: Request, credentials: BearerDep) -> Principal:
    """The caller's key, from the auth cache or the database; 401 if missing, unknown or revoked.

    `async`, so that a cache hit costs no hop to a worker thread; only a miss queries the database, in one, with
    its own session (so a handler that needs no session gets none)."""
    if credentials is None:
        raise ProblemError(401, MISSING_KEY, kind="unauthenticated", headers=CHALLENGE)
    cache = request.app.state.auth_cache
    if (cached := cache.get(credentials.credentials)) is not None:
        return cached
    principal = await run_in_threadpool(_lookup_principal, request.app.state.session_factory, credentials.credentials)
    cache.put(credentials.credentials, principal)
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require_roles(*roles: Role) -> Callable[[Request, HTTPAuthorizationCredentials | None], Awaitable[Principal]]:
    """A dependency that lets only `roles` through (403 with the roles that may call, otherwise).

    It reads the key itself instead of depending on `get_principal`: every dependency FastAPI resolves costs CPU on
    each request, and the role-checked endpoints include the hottest one (GET /v1/jobs/{id})."""
    allowed = ", ".join(roles)

    async def check(request: Request, credentials: BearerDep) -> Principal:
        principal = await get_principal(request, credentials)
        if principal.role not in roles:
            raise ProblemError(
                403,
                f"this endpoint needs one of the roles: {allowed}; your key is a {principal.role}",
                kind="forbidden",
            )
        return principal

    return check


RightsHolderOrAdmin = Annotated[Principal, Depends(require_roles(Role.RIGHTS_HOLDER, Role.ADMIN))]
AdminOnly = Annotated[Principal, Depends(require_roles(Role.ADMIN))]
AnyRole = PrincipalDep
