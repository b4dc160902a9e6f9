"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from api.errors import problem_response, problem_responses
from common.storage import StorageError

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


@router.get("/readyz", responses={200: {"description": "ready"}, **problem_responses(503)})
def readyz(request: Request) -> Response:
    """The database, the broker (if configured) and storage answer."""
    checks: dict[str, Any] = {}
    failed = []
    for name, check in (("database", _check_database), ("broker", _check_broker), ("storage", _check_storage)):
        try:
            checks[name] = check(request)
        except (StorageError, OSError, Exception) as exc:
            checks[name] = f"failed: {type(exc).__name__}: {exc}"
            failed.append(name)
    if failed:
        return problem_response(
            request, 503, f"not ready: {', '.join(failed)} failed; see `checks`", kind="not-ready", checks=checks
        )
    return JSONResponse({"status": "ready", "checks": checks})


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def metrics(request: Request) -> Response:
    """Prometheus metrics: requests, latency, jobs by state, queue depth."""
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
