"""Running one protection job: the state machine around the core's implantation.

`run_implant` is what every runner calls with a job id (the in-process runner, the Celery `implant` task): it
takes the job's lease (queued -> running), resolves the spec's storage keys to files, restores the training
state a previous attempt left in storage, calls a pluggable `protect_fn(spec, workdir, progress, should_cancel)
-> Path` while streaming progress and training state, then archives and publishes the returned folder.
Transient failures put the job back in the queue (the caller retries with backoff); anything else ends it.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func
from sqlalchemy.exc import SQLAlchemyError

from common.db import SessionFactory
from common.jobs.callbacks import CancelFn, JobCallbacks, ProgressFn, ProtectFn
from common.jobs.config import JobConfig
from common.jobs.defaults import default_protect_fn
from common.jobs.errors import (
    FailureKind,
    JobCancelled,
    JobInputError,
    LeaseLost,
    classify,
    describe,
)
from common.jobs.inputs import resolve_base_model, resolve_inputs
from common.jobs.lease import Lease, claim
from common.jobs.publish import PublishRefused, publish
from common.jobs.training_state import TrainingStateSync, delete_state
from common.models import JobStatus, ProtectionJob, utcnow
from common.storage import Storage
from persguard_core.spec import ProtectionSpec

log = logging.getLogger(__name__)
OUTPUT_MARKER = "output.txt"  # in a job's work directory: where the finished model folder is

__all__ = [
    "CancelFn",
    "ImplantOutcome",
    "JobCancelled",
    "JobInputError",
    "ProgressFn",
    "ProtectFn",
    "default_protect_fn",
    "run_implant",
]


@dataclass(frozen=True)
class ImplantOutcome:
    """What became of one implant attempt.

    status: the job's state afterwards (QUEUED after a transient failure: retry it), or None when this runner
    did not (or no longer) hold the job. checkpoint_id: set when the job succeeded and must be verified.
    """

    status: JobStatus | None
    error: str | None = None
    checkpoint_id: uuid.UUID | None = None


def run_implant(
    job_id: uuid.UUID,
    session_factory: SessionFactory,
    storage: Storage,
    protect_fn: ProtectFn = default_protect_fn,
    config: JobConfig | None = None,
    *,
    final_attempt: bool = True,
) -> ImplantOutcome:
    """One attempt at job `job_id` (see the module docstring). With `final_attempt` a transient failure fails
    the job instead of putting it back in the queue."""
    config = config or JobConfig()
    lease = claim(
        session_factory,
        job_id,
        from_status=JobStatus.QUEUED,
        ttl_s=config.lease_s,
        status=JobStatus.RUNNING,
        started_at=utcnow(),
        finished_at=None,
        attempts=ProtectionJob.attempts + 1,
        error=None,
    )
    if lease is None:
        log.info("job %s is not queued (or is held elsewhere); skipping", job_id)
        return ImplantOutcome(None)
    lease.start_heartbeat(config.heartbeat_s)
    log.info("job %s running (lease %s)", job_id, lease.owner)
    workdir = job_workdir(config, job_id)
    outcome = ImplantOutcome(None)
    try:
        outcome = _attempt(lease, session_factory, storage, protect_fn, config, workdir, final_attempt)
        return outcome
    finally:
        lease.stop_heartbeat()
        if outcome.status is None:  # the job is someone else's now
            shutil.rmtree(workdir, ignore_errors=True)
        elif outcome.status is not JobStatus.QUEUED:  # kept after a transient failure: the retry reuses it
            for old in workdir.parent.glob(f"job-{job_id}-*"):
                shutil.rmtree(old, ignore_errors=True)


def job_workdir(config: JobConfig, job_id: uuid.UUID) -> Path:
    """This process's work directory for a job; kept after a transient failure so that the retry reuses it."""
    root = config.workdir_root or Path(tempfile.gettempdir())
    workdir = root / f"job-{job_id}-{os.getpid()}"
    workdir.mkdir(parents=True, exist_ok=True)
    return workdir


def _attempt(
    lease: Lease,
    session_factory: SessionFactory,
    storage: Storage,
    protect_fn: ProtectFn,
    config: JobConfig,
    workdir: Path,
    final_attempt: bool,
) -> ImplantOutcome:
    job_id = lease.job_id
    state = TrainingStateSync(storage, lease, workdir, config.state_upload_interval_s)
    run = JobCallbacks(lease, state, config)
    try:
        with session_factory() as session:
            job = session.get_one(ProtectionJob, job_id)
            verify = job.verification_preset != "none"
            spec = ProtectionSpec.model_validate(job.spec)
            spec = resolve_base_model(session, storage, spec, job.base_model_id, root_cache(config))
            local_spec = resolve_inputs(session, storage, spec, workdir / "inputs")
        output = _finished_output(workdir)
        if output is None:
            if not state.local.exists():
                state.restore()
            output = protect_fn(local_spec, workdir, run.progress, run.should_cancel)
            state.wait()
            (workdir / OUTPUT_MARKER).write_text(str(output))
        else:
            log.info("job %s: reusing the finished implantation of the previous attempt at %s", job_id, output)
        if lease.lost:
            raise LeaseLost(f"job {job_id} was taken over while it ran")
        if run.should_cancel(force=True):
            raise JobCancelled
        checkpoint_id = publish(session_factory, storage, lease, Path(output), workdir, verify=verify)
    except (JobCancelled, PublishRefused) as exc:
        state.wait()
        if lease.lost or (isinstance(exc, PublishRefused) and not exc.cancelled):
            log.warning("job %s: lease lost; leaving the job to its new holder", job_id)
            return ImplantOutcome(None)
        return _end(lease, storage, JobStatus.CANCELLED, "cancelled on request")
    except LeaseLost:
        log.warning("job %s: lease lost; leaving the job to its new holder", job_id)
        return ImplantOutcome(None)
    except Exception as exc:
        if _cancel_requested(run):  # e.g. its subject was deleted while its images were being read
            log.info("job %s: %s: %s after its cancel was requested; cancelled", job_id, type(exc).__name__, exc)
            state.wait()
            return _end(lease, storage, JobStatus.CANCELLED, "cancelled on request")
        state.flush()  # the state is kept (retry, admin retry): its newest file, whatever the upload interval
        return _failure(lease, storage, exc, final_attempt)
    delete_state(storage, job_id)
    log.info("job %s succeeded", job_id)
    return ImplantOutcome(JobStatus.SUCCEEDED, checkpoint_id=checkpoint_id if verify else None)


def _cancel_requested(run: JobCallbacks) -> bool:
    """Whether the job's cancel flag is set now (False when the lease is lost or the database cannot say: the
    failure stands)."""
    try:
        return not run.lease.lost and run.should_cancel(force=True)
    except SQLAlchemyError:
        return False


def _finished_output(workdir: Path) -> Path | None:
    """The model folder a previous attempt in this work directory finished, if any."""
    marker = workdir / OUTPUT_MARKER
    if not marker.exists():
        return None
    output = Path(marker.read_text())
    return output if output.is_dir() else None


def root_cache(config: JobConfig) -> Path:
    """Where a runner keeps what outlives one job (base models from storage)."""
    return (config.workdir_root or Path(tempfile.gettempdir())) / "cache"


def _failure(lease: Lease, storage: Storage, exc: Exception, final_attempt: bool) -> ImplantOutcome:
    """End or re-queue the job after `exc`. The job row gets `describe`'s stable message; the exception itself (which
    may name hosts, paths or credentials) goes to the log only."""
    kind = classify(exc)
    if kind is FailureKind.TRANSIENT and not final_attempt:
        log.warning("job %s: transient failure, back to the queue: %s: %s", lease.job_id, type(exc).__name__, exc)
        error = f"retrying after a transient error: {describe(exc)}"
        if not lease.release(status=JobStatus.QUEUED, error=error, enqueued_at=utcnow()):
            return ImplantOutcome(None)
        return ImplantOutcome(JobStatus.QUEUED, error)
    message = describe(exc)
    if kind is FailureKind.TRANSIENT:
        message = f"gave up after repeated transient errors: {message}"
    log.error(
        "job %s failed (%s): %s; cause: %s: %s",
        lease.job_id,
        kind,
        message,
        type(exc).__name__,
        exc,
        exc_info=kind is FailureKind.FATAL,
    )
    return _end(lease, storage, JobStatus.FAILED, message)


def _end(lease: Lease, storage: Storage, status: JobStatus, error: str | Any) -> ImplantOutcome:
    """End the job as failed or cancelled (fenced); a cancelled job's training state is removed."""
    now = utcnow()
    if status is JobStatus.CANCELLED:  # keep the reason the api gave (e.g. "subject ... was deleted")
        error = func.coalesce(ProtectionJob.error, error)
    if not lease.release(status=status, error=error, finished_at=now):
        return ImplantOutcome(None)
    if status is JobStatus.CANCELLED:
        delete_state(storage, lease.job_id)
    log.info("job %s %s", lease.job_id, status)
    return ImplantOutcome(status, error if isinstance(error, str) else None)
