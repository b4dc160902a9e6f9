"""Job runners: how a queued job id gets to `execute_job`. Embedded mode runs jobs in a background thread."""

from __future__ import annotations

import logging
import uuid
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Protocol

from sqlalchemy import select

from common.db import SessionFactory
from common.jobs.execute import ProtectFn, default_protect_fn, execute_job
from common.models import JobStatus, ProtectionJob
from common.storage import Storage

log = logging.getLogger(__name__)


class JobRunner(Protocol):
    """Rings the doorbell for a job whose `queued` row is already committed."""

    def submit(self, job_id: uuid.UUID) -> None: ...

    def shutdown(self) -> None: ...


class InProcessRunner:
    """Runs jobs one at a time in a background thread of this process (embedded mode)."""

    def __init__(
        self,
        session_factory: SessionFactory,
        storage: Storage,
        protect_fn: ProtectFn = default_protect_fn,
        workdir: Path | None = None,
        max_workers: int = 1,
    ) -> None:
        self._session_factory = session_factory
        self._storage = storage
        self._protect_fn = protect_fn
        self._workdir = workdir
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="persguard-job")
        self._futures: list[Future[JobStatus | None]] = []

    def submit(self, job_id: uuid.UUID) -> None:
        future = self._executor.submit(
            execute_job, job_id, self._session_factory, self._storage, self._protect_fn, self._workdir
        )
        self._futures = [f for f in self._futures if not f.done()] + [future]

    def resume_queued(self) -> int:
        """Submit every job left queued (e.g. by a restart); returns how many."""
        with self._session_factory() as session:
            ids = session.scalars(
                select(ProtectionJob.id)
                .where(ProtectionJob.status == JobStatus.QUEUED)
                .order_by(ProtectionJob.created_at)
            ).all()
        for job_id in ids:
            self.submit(job_id)
        return len(ids)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every submitted job has finished; False if `timeout` passed first."""
        _done, pending = wait(list(self._futures), timeout=timeout)
        return not pending

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


class NullRunner:
    """Submits nothing: for a deployment whose worker polls the database, and for tests."""

    def __init__(self) -> None:
        self.submitted: list[uuid.UUID] = []

    def submit(self, job_id: uuid.UUID) -> None:
        self.submitted.append(job_id)

    def shutdown(self) -> None:
        return None
