"""Job runners: how a queued job id gets to `run_implant`. Embedded mode runs jobs in a background thread.

The in-process runner runs the same code as the Celery tasks (`run_implant`, then `run_verification` when the
job asks for it), with the same retries after transient failures, one job at a time. At start-up
(`resume_queued`) it takes up what its previous process left: queued and running jobs, and pending verifications.
"""

from __future__ import annotations

import logging
import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import timedelta
from pathlib import Path
from typing import Protocol

from sqlalchemy import select

from common.db import SessionFactory
from common.jobs.config import JobConfig
from common.jobs.execute import ProtectFn, default_protect_fn, run_implant
from common.jobs.recovery import pending_verifications, requeue_dead_jobs
from common.jobs.verification import VerifyFn, default_verify_fn, run_verification
from common.models import JobStatus, ProtectionJob, utcnow
from common.storage import Storage

log = logging.getLogger(__name__)


class JobRunner(Protocol):
    """Rings the doorbell for a job whose `queued` row is already committed."""

    def submit(self, job_id: uuid.UUID) -> None: ...

    def shutdown(self) -> None: ...


def backoff_s(retry: int, base_s: float, max_s: float) -> float:
    """Delay before retry number `retry` (0-based): base, 2x base, 4x base, ... capped at `max_s`."""
    return min(max_s, base_s * 2**retry)


class InProcessRunner:
    """Runs jobs one at a time in a background thread of this process (embedded mode)."""

    def __init__(
        self,
        session_factory: SessionFactory,
        storage: Storage,
        protect_fn: ProtectFn = default_protect_fn,
        workdir: Path | None = None,
        max_workers: int = 1,
        *,
        verify_fn: VerifyFn = default_verify_fn,
        config: JobConfig | None = None,
        retries: int = 3,
        retry_backoff_s: float = 5.0,
        retry_backoff_max_s: float = 300.0,
    ) -> None:
        self._session_factory = session_factory
        self._storage = storage
        self._protect_fn = protect_fn
        self._verify_fn = verify_fn
        self._config = config or JobConfig(workdir_root=workdir)
        self._retries = retries
        self._backoff = (retry_backoff_s, retry_backoff_max_s)
        self._stopping = threading.Event()
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="persguard-job")
        self._futures: list[Future[JobStatus | None]] = []

    def submit(self, job_id: uuid.UUID) -> None:
        future = self._executor.submit(self.run, job_id)
        self._futures = [f for f in self._futures if not f.done()] + [future]

    def run(self, job_id: uuid.UUID) -> JobStatus | None:
        """Implant (retrying transient failures with backoff), then verify if the job asks for it."""
        outcome = None
        for retry in range(self._retries + 1):
            final = retry == self._retries
            outcome = run_implant(
                job_id, self._session_factory, self._storage, self._protect_fn, self._config, final_attempt=final
            )
            if outcome.status is not JobStatus.QUEUED or self._stopping.wait(backoff_s(retry, *self._backoff)):
                break
        if outcome is None or outcome.checkpoint_id is None:
            return outcome.status if outcome else None
        self.verify(outcome.checkpoint_id)
        return outcome.status

    def verify(self, checkpoint_id: uuid.UUID) -> None:
        """Verify a published checkpoint, retrying transient failures with backoff (up to the attempt limit)."""
        for retry in range(self._retries + 1):
            verified = run_verification(
                checkpoint_id,
                self._session_factory,
                self._storage,
                self._verify_fn,
                self._config,
                final_attempt=retry == self._retries,
            )
            if not verified.retry or self._stopping.wait(backoff_s(retry, *self._backoff)):
                break

    def submit_verification(self, checkpoint_id: uuid.UUID) -> None:
        future = self._executor.submit(self.verify, checkpoint_id)
        self._futures = [f for f in self._futures if not f.done()] + [future]

    def resume_queued(self) -> int:
        """Re-queue jobs a previous process left running, then submit every queued job and every verification
        still pending (of a succeeded job whose checkpoint has no report yet); returns how many.

        Embedded mode has one runner process: every lease it finds at start-up belongs to a process that is gone.
        """
        gone = utcnow() + timedelta(seconds=self._config.lease_s + 1)  # every lease of that process has run out
        requeue_dead_jobs(self._session_factory, gone)
        with self._session_factory() as session:
            ids = session.scalars(
                select(ProtectionJob.id)
                .where(ProtectionJob.status == JobStatus.QUEUED)
                .order_by(ProtectionJob.created_at)
            ).all()
        checkpoints = pending_verifications(self._session_factory, gone)
        for job_id in ids:
            self.submit(job_id)
        for checkpoint_id in checkpoints:
            self.submit_verification(checkpoint_id)
        return len(ids) + len(checkpoints)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every submitted job has finished; False if `timeout` passed first."""
        _done, pending = wait(list(self._futures), timeout=timeout)
        return not pending

    def shutdown(self) -> None:
        self._stopping.set()
        self._executor.shutdown(wait=True, cancel_futures=True)


class NullRunner:
    """Submits nothing: for a deployment whose worker polls the database, and for tests."""

    def __init__(self) -> None:
        self.submitted: list[uuid.UUID] = []

    def submit(self, job_id: uuid.UUID) -> None:
        self.submitted.append(job_id)

    def shutdown(self) -> None:
        return None
