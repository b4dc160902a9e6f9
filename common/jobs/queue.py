"""The Celery side shared by the api (which only rings doorbells) and the worker (which answers them).

Task names and queues are fixed here so that the api can send `implant(job_id)` by name without importing the
worker. Nothing but ids travels on the queue; the database holds the job.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from celery import Celery
from kombu import Queue

from common.db import SessionFactory
from common.jobs.recovery import mark_rung
from common.jobs.schedule import reconcile_schedule
from common.settings import Settings

log = logging.getLogger(__name__)

IMPLANT_TASK = "persguard.implant"
VERIFY_TASK = "persguard.verify"
RECONCILE_TASK = "persguard.reconcile"
PURGE_TASK = "persguard.purge"
GPU_QUEUE = "gpu"
DEFAULT_QUEUE = "default"
ROUTES = {IMPLANT_TASK: GPU_QUEUE, VERIFY_TASK: GPU_QUEUE, RECONCILE_TASK: DEFAULT_QUEUE, PURGE_TASK: DEFAULT_QUEUE}


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery settings of every PersGuard process (see docs/WORKER.md for why each is set)."""
    return {
        "broker_url": settings.broker_url,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            "visibility_timeout": settings.broker_visibility_timeout_s,
            "socket_connect_timeout": 5,
        },
        "task_queues": (Queue(GPU_QUEUE), Queue(DEFAULT_QUEUE)),
        "task_default_queue": DEFAULT_QUEUE,
        "task_routes": {name: {"queue": queue} for name, queue in ROUTES.items()},
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "worker_concurrency": 1,
        "task_soft_time_limit": settings.job_soft_time_limit_s,
        "task_time_limit": settings.job_time_limit_s,
        "task_publish_retry": True,
        "task_publish_retry_policy": {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        "worker_hijack_root_logger": False,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "beat_schedule": {
            "reconcile": {"task": RECONCILE_TASK, "schedule": reconcile_schedule(settings)},
            "purge": {"task": PURGE_TASK, "schedule": settings.purge_interval_s},
        },
        "enable_utc": True,
    }


def make_celery(settings: Settings, name: str = "persguard") -> Celery:
    """A Celery app configured from the settings (requires `broker_url`)."""
    if not settings.broker_url:
        raise ValueError("PERSGUARD_BROKER_URL is not set: there is no queue to talk to")
    app = Celery(name)
    app.conf.update(celery_config(settings))
    return app


@dataclass(frozen=True)
class BrokerWorker:
    """A Celery worker that answered `inspect`: its name, the queues it consumes and the tasks it runs now."""

    name: str
    queues: tuple[str, ...]
    active_tasks: int


class CeleryRunner:
    """Rings the doorbell on the broker: sends `implant(job_id)`. A broker that cannot be reached is logged, not
    raised: the job row is committed, and the reconciler rings again for jobs whose message never left."""

    def __init__(self, app: Celery, session_factory: SessionFactory) -> None:
        self.app = app
        self._session_factory = session_factory

    def submit(self, job_id: uuid.UUID) -> None:
        try:
            self.app.send_task(IMPLANT_TASK, args=[str(job_id)], queue=GPU_QUEUE)
        except Exception as exc:
            log.warning("job %s: could not reach the broker (%s); the reconciler will enqueue it", job_id, exc)
            return
        mark_rung(self._session_factory, job_id)

    def broker_workers(self, timeout: float = 1.0) -> list[BrokerWorker]:
        """The workers that answer an `inspect` broadcast within `timeout` seconds (raises if the broker cannot be
        reached)."""
        inspector = self.app.control.inspect(timeout=timeout)
        queues = inspector.active_queues() or {}
        active = inspector.active() or {}
        return [
            BrokerWorker(name, tuple(sorted(q["name"] for q in queues.get(name) or [])), len(active.get(name) or []))
            for name in sorted(set(queues) | set(active))
        ]

    def shutdown(self) -> None:
        self.app.close()
