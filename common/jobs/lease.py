"""Job leases: the row lock that says who runs a job and until when.

A runner takes a job with `claim` (a `SELECT ... FOR UPDATE SKIP LOCKED` on Postgres, then a conditional
UPDATE, so two runners never take one job) and gets a `Lease`. A heartbeat thread renews the lease while the
job runs. Every write a runner makes is fenced by its lease: once the reconciler has handed a dead-looking job to
someone else, the old runner's writes match no row, `Lease.lost` turns true and the runner stops.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from common.db import SessionFactory
from common.models import JobStatus, ProtectionJob, utcnow

log = logging.getLogger(__name__)


def new_owner() -> str:
    """A lease owner name: host, process and a random suffix (one per claim)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class Lease:
    """A runner's hold on one job row; `fenced_update` writes only while the lease is ours."""

    session_factory: SessionFactory
    job_id: uuid.UUID
    owner: str
    ttl_s: float
    lost: bool = False
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def fenced_update(self, **values: Any) -> bool:
        """UPDATE the job row where the lease is still ours; False (and `lost`) if it is not."""
        with self.session_factory() as session:
            result = session.execute(
                update(ProtectionJob)
                .where(ProtectionJob.id == self.job_id, ProtectionJob.lease_owner == self.owner)
                .values(**values)
            )
            session.commit()
        if result.rowcount != 1:
            if not self.lost:
                log.warning("job %s: lease %s lost (taken over or released elsewhere)", self.job_id, self.owner)
            self.lost = True
            return False
        return True

    def renew(self) -> bool:
        """Extend the lease by `ttl_s` from now; False if it was lost."""
        now = utcnow()
        return self.fenced_update(
            heartbeat_at=now, lease_expires_at=now + timedelta(seconds=self.ttl_s), updated_at=now
        )

    def start_heartbeat(self, interval_s: float) -> None:
        """Renew the lease every `interval_s` seconds in a daemon thread until `release` or loss."""

        def beat() -> None:
            while not self._stop.wait(interval_s):
                try:
                    if not self.renew():
                        return
                except SQLAlchemyError as exc:  # the database is away for a moment: try again next beat
                    log.warning("job %s: heartbeat failed: %s", self.job_id, exc)

        self._thread = threading.Thread(target=beat, name=f"heartbeat-{self.job_id}", daemon=True)
        self._thread.start()

    def stop_heartbeat(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def release(self, **values: Any) -> bool:
        """Stop the heartbeat and clear the lease, writing `values` in the same fenced UPDATE."""
        self.stop_heartbeat()
        return self.fenced_update(lease_owner=None, lease_expires_at=None, updated_at=utcnow(), **values)


def claim(
    session_factory: SessionFactory,
    job_id: uuid.UUID,
    *,
    from_status: JobStatus,
    ttl_s: float,
    owner: str | None = None,
    **values: Any,
) -> Lease | None:
    """Take job `job_id` if it is in `from_status` and no live lease holds it; writes `values` with the lease.

    Returns None if the job is elsewhere (another runner holds it, it finished, or it was cancelled).
    """
    owner = owner or new_owner()
    now = utcnow()
    free = or_(ProtectionJob.lease_owner.is_(None), ProtectionJob.lease_expires_at < now)
    with session_factory() as session:
        locked = session.scalar(
            select(ProtectionJob.id)
            .where(ProtectionJob.id == job_id, ProtectionJob.status == from_status, free)
            .with_for_update(skip_locked=True)
        )
        if locked is None:
            return None
        result = session.execute(
            update(ProtectionJob)
            .where(ProtectionJob.id == job_id, ProtectionJob.status == from_status, free)
            .values(
                lease_owner=owner,
                lease_expires_at=now + timedelta(seconds=ttl_s),
                heartbeat_at=now,
                updated_at=now,
                **values,
            )
        )
        session.commit()
    if result.rowcount != 1:
        return None
    return Lease(session_factory, job_id, owner, ttl_s)
