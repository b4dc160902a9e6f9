"""Per-process resources of a worker: settings, database sessions, storage, the implant and verify functions."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache

from common.callables import load_callable
from common.db import SessionFactory, make_engine, make_session_factory
from common.jobs import JobConfig, ProtectFn, VerifyFn, default_protect_fn, default_verify_fn
from common.settings import Settings, get_settings
from common.storage import Storage, storage_from_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerContext:
    settings: Settings
    session_factory: SessionFactory
    storage: Storage
    config: JobConfig
    protect_fn: ProtectFn
    verify_fn: VerifyFn


@lru_cache(maxsize=1)
def context() -> WorkerContext:
    """This process's context, made on first use (after the fork, so every child has its own connections)."""
    settings = get_settings()
    protect_fn = load_callable(settings.protect_fn) if settings.protect_fn else default_protect_fn
    verify_fn = load_callable(settings.verify_fn) if settings.verify_fn else default_verify_fn
    if settings.protect_fn or settings.verify_fn:
        log.warning("using protect_fn=%s verify_fn=%s", settings.protect_fn, settings.verify_fn)
    return WorkerContext(
        settings=settings,
        session_factory=make_session_factory(make_engine(settings.database_url)),
        storage=storage_from_settings(settings, role="worker"),
        config=JobConfig.from_settings(settings),
        protect_fn=protect_fn,
        verify_fn=verify_fn,
    )
