"""The FastAPI application factory: `uvicorn --factory api.main:create_app`, or `persguard serve`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI

from api.auth_cache import AuthCache
from api.errors import install_problem_handlers
from api.metrics import Metrics, MetricsMiddleware
from api.openapi import install_openapi
from api.rate_limit import RateLimiter
from api.reads import Reads
from api.request_guard import RequestGuard
from api.routes import checkpoints, files, health, jobs, models, protections, subjects
from api.services.quotas import Quotas
from api.upload_guard import UploadGuard
from api.web import install_web
from common.callables import configured_job_functions
from common.db import SessionFactory, make_engine, make_session_factory
from common.jobs import InProcessRunner, JobConfig, JobRunner
from common.settings import Settings, get_settings
from common.storage import Storage, storage_from_settings

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger(__name__)

UPLOAD_PATHS = frozenset({"/v1/subjects"})
# Paths served without a key: liveness and readiness, and the signed download links (their signature is the
# credential); the OpenAPI document and docs pages are added from the app's own settings.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/v1/files"})


def default_runner(settings: Settings, session_factory: SessionFactory, storage: Storage) -> JobRunner:
    """The Celery runner when a broker is configured (workers run the jobs), else the in-process runner."""
    if settings.broker_url:
        from common.jobs.queue import CeleryRunner, make_celery  # celery is only needed with a broker

        celery = make_celery(settings, name="persguard-api")
        warm_up_broker(celery)
        return CeleryRunner(celery, session_factory)
    return InProcessRunner(
        session_factory,
        storage,
        **configured_job_functions(settings),  # PROTECT_FN / VERIFY_FN, as for the workers
        config=JobConfig.from_settings(settings),
        retries=settings.transient_retries,
        retry_backoff_s=settings.retry_backoff_s,
        retry_backoff_max_s=settings.retry_backoff_max_s,
    )


def warm_up_broker(celery: Celery) -> None:
    """Do the one-off work of the first send now (imports, result backend, task sender, broker connection, queue
    declaration: ~150 ms that would land on the first POST /v1/protections). One connection attempt; a broker that
    cannot be reached is only logged (submits then ring the doorbell as usual, or leave it to the reconciler)."""
    from common.jobs.queue import GPU_QUEUE

    try:
        _ = celery.backend, celery.amqp.send_task_message
        with celery.producer_or_acquire() as producer:
            producer.connection.ensure_connection(max_retries=0)
            producer.maybe_declare(celery.amqp.queues[GPU_QUEUE])
    except Exception as exc:
        log.warning("could not warm up the broker connection (%s); the first submit will connect", exc)


def create_app(
    settings: Settings | None = None,
    *,
    session_factory: SessionFactory | None = None,
    storage: Storage | None = None,
    runner: JobRunner | None = None,
) -> FastAPI:
    """Build the API; anything not given comes from `settings` (the environment by default)."""
    settings = settings or get_settings()  # production settings with a missing or default secret raise here
    settings.check_process("api")
    engine = None
    if session_factory is None:
        engine = make_engine(settings.database_url)
        session_factory = make_session_factory(engine)
    storage = storage or storage_from_settings(settings, role="api")
    runner = runner or default_runner(settings, session_factory, storage)
    reads = Reads(engine or session_factory.kw["bind"])

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if isinstance(runner, InProcessRunner):
            resumed = runner.resume_queued()
            if resumed:
                log.info("resumed %d queued jobs", resumed)
        yield
        reads.shutdown()
        runner.shutdown()
        if engine is not None:
            engine.dispose()

    app = FastAPI(
        title="PersGuard protection service",
        version="1",
        summary="Register subjects, protect them in a text-to-image model, download protected checkpoints.",
        lifespan=lifespan,
        # Observability is the Prometheus registry (api/metrics.py). FastAPI's native OpenTelemetry bridge, which no
        # deployment configures, would look up the global OpenTelemetry providers on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.session_factory = session_factory
    app.state.storage = storage
    app.state.runner = runner
    app.state.reads = reads
    app.state.metrics = Metrics(session_factory)
    app.state.auth_cache = AuthCache(settings.auth_cache_ttl_s)
    app.state.quotas = Quotas.from_settings(settings)

    install_problem_handlers(app)
    install_openapi(app, settings)  # the settings' limits in /openapi.json
    for module in (health, subjects, protections, jobs, checkpoints, models, files):
        app.include_router(module.router)
    web_prefixes = install_web(app, settings)  # the dashboard and report pages (docs/DASHBOARD.md)
    # The last added runs first: metrics (which count the guard's refusals too), then the request guard (key, rate,
    # body size), then the upload content-type check.
    app.add_middleware(UploadGuard, paths=UPLOAD_PATHS)
    app.add_middleware(
        RequestGuard,
        public_paths=PUBLIC_PATHS | docs_paths(app),
        upload_paths=UPLOAD_PATHS,
        public_prefixes=web_prefixes,
        max_json_bytes=settings.max_json_body_bytes,
        max_upload_bytes=settings.max_request_bytes,
        rate_limiter=RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst),
    )
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    return app


def docs_paths(app: FastAPI) -> frozenset[str]:
    """The paths of the OpenAPI document and the docs pages that `app` serves."""
    paths = (app.openapi_url, app.docs_url, app.redoc_url)
    oauth2_redirect = app.swagger_ui_oauth2_redirect_url if app.docs_url else None
    return frozenset(path for path in (*paths, oauth2_redirect) if path)
