"""The Celery app of the workers: `celery -A worker.app worker -Q gpu` (or `persguard worker`).

Configuration comes from the `PERSGUARD_*` settings (common/jobs/queue.py); tasks are in worker/tasks.py, the
reconciler and the storage sweep in worker/reconciler.py.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import worker_process_init

from common.jobs.queue import make_celery
from common.settings import get_settings

log = logging.getLogger(__name__)

# Production settings with a missing or default secret, or without the workers' own S3 keys, stop the process here,
# before it connects to anything (common/settings.py: UnsafeSettings).
get_settings().check_process("worker")
app = make_celery(get_settings(), name="persguard-worker")
app.conf.include = ["worker.tasks", "worker.reconciler"]


@worker_process_init.connect
def _init_process(**_kwargs: Any) -> None:
    """In each pool process: cap torch's threads if configured. CUDA is first touched inside a task."""
    threads = get_settings().torch_threads
    if threads:
        import torch

        torch.set_num_threads(threads)
        log.info("torch limited to %d threads", threads)
