"""What Celery beat runs on the `default` queue: `reconcile` (dead workers, lost doorbells) and `purge`
(orphaned objects, unfinished uploads)."""

from __future__ import annotations

import logging

from common.jobs.queue import GPU_QUEUE, IMPLANT_TASK, PURGE_TASK, RECONCILE_TASK, VERIFY_TASK
from common.jobs.recovery import due_doorbells
from worker.app import app
from worker.context import context
from worker.sweep import sweep_storage

log = logging.getLogger(__name__)


@app.task(name=RECONCILE_TASK, ignore_result=True)
def reconcile() -> dict[str, int]:
    """Re-queue jobs of dead workers and ring again for jobs and checkpoints whose message was lost."""
    ctx = context()
    bells = due_doorbells(ctx.session_factory, ctx.settings.job_requeue_after_s, max_attempts=ctx.settings.max_attempts)
    for job_id in bells.implant:
        app.send_task(IMPLANT_TASK, args=[str(job_id)], queue=GPU_QUEUE)
    for checkpoint_id in bells.verify:
        app.send_task(VERIFY_TASK, args=[str(checkpoint_id)], queue=GPU_QUEUE)
    counts = {"requeued_dead": len(bells.requeued_dead), "implant": len(bells.implant), "verify": len(bells.verify)}
    if any(counts.values()):
        log.info("reconcile: %s", counts)
    return counts


@app.task(name=PURGE_TASK, ignore_result=True)
def purge() -> dict[str, int]:
    """Delete orphaned objects and abort stale uploads (older than PERSGUARD_ORPHAN_GRACE_S)."""
    ctx = context()
    report = sweep_storage(
        ctx.session_factory, ctx.storage, ctx.settings.orphan_grace_s, ctx.settings.failed_state_retention_s
    )
    return {"deleted": len(report.deleted), "aborted_uploads": report.aborted_uploads}
