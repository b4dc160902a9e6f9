"""The GPU tasks: `implant(job_id)` and `verify(checkpoint_id)`. Both only carry ids; the rows hold the rest.

Each task is safe to receive twice (a re-sent doorbell, a redelivered message): it runs only if it can take the
job's lease. Transient failures are retried with exponential backoff through the broker; after
`PERSGUARD_TRANSIENT_RETRIES` retries the job fails.
"""

from __future__ import annotations

import logging
import uuid

from celery import Task

from common.jobs import run_implant, run_verification
from common.jobs.queue import GPU_QUEUE, IMPLANT_TASK, VERIFY_TASK
from common.jobs.runner import backoff_s
from common.models import JobStatus
from worker.app import app
from worker.context import WorkerContext, context

log = logging.getLogger(__name__)


def _limit_threads(ctx: WorkerContext) -> None:
    if ctx.settings.torch_threads:
        import torch

        torch.set_num_threads(ctx.settings.torch_threads)


def _countdown(ctx: WorkerContext, retries: int) -> float:
    return backoff_s(retries, ctx.settings.retry_backoff_s, ctx.settings.retry_backoff_max_s)


def send_verify(checkpoint_id: uuid.UUID) -> None:
    """Queue `verify`; if the broker is away the reconciler sends it later (the checkpoint has no report)."""
    try:
        app.send_task(VERIFY_TASK, args=[str(checkpoint_id)], queue=GPU_QUEUE)
    except Exception as exc:
        log.warning("checkpoint %s: could not queue verify (%s); the reconciler will", checkpoint_id, exc)


@app.task(name=IMPLANT_TASK, bind=True, max_retries=None)
def implant(self: Task, job_id: str) -> str | None:
    """Run the implantation of job `job_id` (it must be queued), publish its checkpoint, queue `verify`."""
    ctx = context()
    _limit_threads(ctx)
    retries = self.request.retries
    final = retries >= ctx.settings.transient_retries
    outcome = run_implant(
        uuid.UUID(job_id), ctx.session_factory, ctx.storage, ctx.protect_fn, ctx.config, final_attempt=final
    )
    if outcome.status is JobStatus.QUEUED:
        countdown = _countdown(ctx, retries)
        log.info("job %s: retry %d in %.1fs", job_id, retries + 1, countdown)
        raise self.retry(countdown=countdown)
    if outcome.checkpoint_id is not None:
        send_verify(outcome.checkpoint_id)
    return outcome.status.value if outcome.status else None


@app.task(name=VERIFY_TASK, bind=True, max_retries=None)
def verify(self: Task, checkpoint_id: str) -> bool:
    """Attack the checkpoint with the job's verification preset and store the report; True if a report exists."""
    ctx = context()
    _limit_threads(ctx)
    retries = self.request.retries
    final = retries >= ctx.settings.transient_retries
    outcome = run_verification(
        uuid.UUID(checkpoint_id), ctx.session_factory, ctx.storage, ctx.verify_fn, ctx.config, final_attempt=final
    )
    if outcome.retry:
        raise self.retry(countdown=_countdown(ctx, retries))
    return outcome.done
