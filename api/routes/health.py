"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from api.deps import AdminOnly
from api.errors import problem_response, problem_responses

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


def _check_database(request: Request) -> str:
    with request.app.state.session_factory() as session:
        session.execute(text("SELECT 1"))
    return "ok"


def _check_storage(request: Request) -> str:
    request.app.state.storage.check()
    return "ok"


def _check_broker(request: Request) -> str:
    url = request.app.state.settings.broker_url
    if not url:
        return "not configured (in-process runner)"
    import redis  # the broker client is only needed when a broker is configured

    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    finally:
        client.close()
    return "ok"


CHECKS: tuple[tuple[str, Callable[[Request], str]], ...] = (
    ("database", _check_database),
    ("broker", _check_broker),
    ("storage", _check_storage),
)


def _run_check(name: str, check: Callable[[Request], str], request: Request) -> str | None:
    """The check's result, or None if it failed; why it failed goes to the log only (the endpoint is public)."""
    try:
        return check(request)
    except Exception:
        log.warning("readiness check %s failed", name, exc_info=True)
        return None


@router.get("/readyz", responses={200: {"description": "ready"}, **problem_responses(503)})
def readyz(request: Request) -> Response:
    """The database, the broker (if configured) and storage answer; a 503 names only those that do not."""
    checks = {name: _run_check(name, check, request) for name, check in CHECKS}
    down = {name: "unavailable" for name, result in checks.items() if result is None}
    if down:
        detail = "not ready: " + ", ".join(f"{name} unavailable" for name in down)
        return problem_response(request, 503, detail, kind="not-ready", checks=down)
    return JSONResponse({"status": "ready", "checks": checks})


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}, **problem_responses(401, 403)},
)
def metrics(request: Request, _admin: AdminOnly) -> Response:
    """Prometheus metrics (admin keys only: they count every tenant's jobs): requests, latency, jobs by state,
    queue depth."""
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
