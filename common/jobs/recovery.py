"""Finding jobs whose runner died or whose doorbell was lost (the reconciler's database half).

The row is the truth and the queue only a doorbell, so every rule here looks at rows:
- a running job whose lease ran out (its worker died) goes back to `queued` and is rung again;
- a queued job rung longer ago than `requeue_after_s` is rung again (its message may have been lost, e.g. with
  a Redis restart; a duplicate is harmless: only one runner can take the lease);
- a succeeded job whose checkpoint still waits for its verification report is rung again on the same terms
  (`pending_verifications` lists them for the embedded runner's start-up).
`next_lease_expiry` tells beat when the first rule applies next (common/jobs/schedule.py).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Select, and_, func, or_, select, update

from common.db import SessionFactory
from common.models import Checkpoint, JobStatus, ProtectionJob, VerificationReport, utcnow

log = logging.getLogger(__name__)


@dataclass
class Doorbells:
    """The messages to send: implant(job id) and verify(checkpoint id)."""

    implant: list[uuid.UUID] = field(default_factory=list)
    verify: list[uuid.UUID] = field(default_factory=list)
    requeued_dead: list[uuid.UUID] = field(default_factory=list)


def requeue_dead_jobs(
    session_factory: SessionFactory, now: datetime | None = None, max_attempts: int | None = None
) -> list[uuid.UUID]:
    """Put running jobs whose lease ran out back in the queue; returns their ids. A job whose worker died for
    the `max_attempts`-th time (a job that kills its process, e.g. by exhausting host memory) fails instead."""
    now = now or utcnow()
    with session_factory() as session:
        rows = session.execute(
            select(ProtectionJob.id, ProtectionJob.worker_losses)
            .where(ProtectionJob.status == JobStatus.RUNNING, ProtectionJob.lease_expires_at < now)
            .with_for_update(skip_locked=True)
        ).all()
        exhausted = [job_id for job_id, losses in rows if max_attempts is not None and losses + 1 >= max_attempts]
        ids = [job_id for job_id, _ in rows if job_id not in exhausted]
        dead = (ProtectionJob.status == JobStatus.RUNNING, ProtectionJob.lease_expires_at < now)
        cleared = {
            "lease_owner": None,
            "lease_expires_at": None,
            "updated_at": now,
            "worker_losses": ProtectionJob.worker_losses + 1,
        }
        if ids:
            session.execute(
                update(ProtectionJob)
                .where(ProtectionJob.id.in_(ids), *dead)
                .values(
                    status=JobStatus.QUEUED,
                    error="its worker stopped answering; re-queued",
                    enqueued_at=None,
                    **cleared,
                )
            )
        if exhausted:
            error = (
                f"its worker died {max_attempts} times while running it (killed by the system, e.g. out of host "
                "memory, or past the hard time limit); not re-queued again"
            )
            session.execute(
                update(ProtectionJob)
                .where(ProtectionJob.id.in_(exhausted), *dead)
                .values(status=JobStatus.FAILED, error=error, finished_at=now, **cleared)
            )
        session.commit()
    for job_id in ids:
        log.warning("job %s: worker lost (lease expired); re-queued", job_id)
    for job_id in exhausted:
        log.error("job %s: worker lost %s times; failed", job_id, max_attempts)
    return ids


def due_doorbells(
    session_factory: SessionFactory,
    requeue_after_s: float,
    now: datetime | None = None,
    max_attempts: int | None = None,
) -> Doorbells:
    """Jobs and checkpoints to ring (again), marked as rung now."""
    now = now or utcnow()
    bells = Doorbells(requeued_dead=requeue_dead_jobs(session_factory, now, max_attempts))
    stale = now - timedelta(seconds=requeue_after_s)
    last_rung = func.coalesce(ProtectionJob.enqueued_at, ProtectionJob.created_at)
    with session_factory() as session:
        queued = session.scalars(
            select(ProtectionJob.id).where(
                ProtectionJob.status == JobStatus.QUEUED,
                or_(ProtectionJob.enqueued_at.is_(None), last_rung < stale),
            )
        ).all()
        unverified = session.execute(
            unverified_checkpoints().where(
                or_(
                    and_(ProtectionJob.lease_owner.is_(None), last_rung < stale),
                    ProtectionJob.lease_expires_at < now,
                )
            )
        ).all()
        job_ids = list(queued) + [job_id for job_id, _ in unverified]
        if job_ids:
            session.execute(update(ProtectionJob).where(ProtectionJob.id.in_(job_ids)).values(enqueued_at=now))
            session.execute(
                update(ProtectionJob)
                .where(ProtectionJob.id.in_([j for j, _ in unverified]), ProtectionJob.lease_expires_at < now)
                .values(lease_owner=None, lease_expires_at=None)
            )
        session.commit()
    bells.implant = list(queued)
    bells.verify = [checkpoint_id for _, checkpoint_id in unverified]
    return bells


def unverified_checkpoints() -> Select[tuple[uuid.UUID, uuid.UUID]]:
    """(job id, checkpoint id) of succeeded jobs that asked for a verification and have no report yet."""
    return (
        select(ProtectionJob.id, Checkpoint.id)
        .join(Checkpoint, Checkpoint.job_id == ProtectionJob.id)
        .outerjoin(VerificationReport, VerificationReport.checkpoint_id == Checkpoint.id)
        .where(
            ProtectionJob.status == JobStatus.SUCCEEDED,
            ProtectionJob.verification_preset != "none",
            VerificationReport.id.is_(None),
        )
    )


def pending_verifications(session_factory: SessionFactory, now: datetime | None = None) -> list[uuid.UUID]:
    """Checkpoints of succeeded jobs still waiting for their verification report whose job holds no live lease at
    `now`, oldest job first; a verification lease that ran out by then is cleared (its holder is gone), so that
    `run_verification` can take the job again (that attempt counts, as after any worker's death)."""
    now = now or utcnow()
    free = or_(ProtectionJob.lease_owner.is_(None), ProtectionJob.lease_expires_at < now)
    with session_factory() as session:
        rows = session.execute(unverified_checkpoints().where(free).order_by(ProtectionJob.created_at)).all()
        if rows:
            session.execute(
                update(ProtectionJob)
                .where(
                    ProtectionJob.id.in_([job_id for job_id, _ in rows]),
                    ProtectionJob.status == JobStatus.SUCCEEDED,
                    ProtectionJob.lease_expires_at < now,
                )
                .values(lease_owner=None, lease_expires_at=None)
            )
        session.commit()
    return [checkpoint_id for _, checkpoint_id in rows]


def next_lease_expiry(session_factory: SessionFactory, since: datetime) -> datetime | None:
    """The earliest expiry at or after `since` of a lease (a running job's, or a verification's), if any: from then
    on the reconciler hands that job to another runner. A lease expiring at `since` itself is still live at
    `since` (the reconciler takes leases that expired before its `now`), so it is counted."""
    with session_factory() as session:
        return session.scalar(
            select(func.min(ProtectionJob.lease_expires_at)).where(ProtectionJob.lease_expires_at >= since)
        )


def mark_rung(session_factory: SessionFactory, job_id: uuid.UUID) -> None:
    """Record that job `job_id`'s doorbell was just sent."""
    with session_factory() as session:
        session.execute(update(ProtectionJob).where(ProtectionJob.id == job_id).values(enqueued_at=utcnow()))
        session.commit()


def fail_queued_job(session_factory: SessionFactory, job_id: uuid.UUID, error: str) -> bool:
    """End a queued job as failed (after its retries ran out); False if it is no longer queued."""
    now = utcnow()
    with session_factory() as session:
        result = session.execute(
            update(ProtectionJob)
            .where(ProtectionJob.id == job_id, ProtectionJob.status == JobStatus.QUEUED)
            .values(status=JobStatus.FAILED, error=error, finished_at=now, updated_at=now)
        )
        session.commit()
    return result.rowcount == 1
