"""Protection jobs and their state machine: queued -> running -> succeeded / failed / cancelled."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, Boolean, Column, Float, ForeignKey, Integer, String, Table, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from common.models.base import Base, CreatedMixin, IdMixin, utcnow
from common.models.subjects import Subject

if TYPE_CHECKING:
    from common.models.checkpoints import Checkpoint
    from common.models.registry import BaseModelEntry


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class JobPhase(enum.StrEnum):
    """What a job's progress (`step`, `total_steps`) counts: the implantation's steps, then its verification's."""

    PROTECTING = "protecting"
    VERIFYING = "verifying"


job_subjects = Table(
    "job_subjects",
    Base.metadata,
    Column("job_id", ForeignKey("protection_jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("subject_id", ForeignKey("subjects.id", ondelete="CASCADE"), primary_key=True, index=True),
)


class ProtectionJob(IdMixin, CreatedMixin, Base):
    """One protection run; the row is the truth, a queue only rings the bell (ARCHITECTURE.md)."""

    __tablename__ = "protection_jobs"
    __table_args__ = (UniqueConstraint("tenant_id", "idempotency_key", name="uq_protection_jobs_idempotency"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    created_by_key_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))
    base_model_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("base_models.id", ondelete="SET NULL"), index=True
    )
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    verification_preset: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED, index=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    step: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int] = mapped_column(Integer, default=0)
    losses: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # Who runs it now and until when (renewed by heartbeats); the reconciler re-queues a job whose lease ran out.
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(index=True)  # beat looks up the earliest
    heartbeat_at: Mapped[datetime | None]
    # When the doorbell (queue message) was last sent; a lost one is sent again after a while.
    enqueued_at: Mapped[datetime | None]
    # How many times a worker died while holding the job (the reconciler re-queued it).
    worker_losses: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The training step of the resumable state last saved to storage (0: none).
    state_step: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The sha256 of that state object, recorded by the upload under the job's lease; a stored state that does not
    # match it (tampered, a stale worker's late upload, or none recorded) is never resumed from.
    state_sha256: Mapped[str | None] = mapped_column(String(64))
    # Attempts at verifying the job's checkpoint so far (each taking of the lease by `verify` counts).
    verify_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # What the progress columns count now (JobPhase; null before the job starts), since when and from which step:
    # the api's time-left estimate is the phase's elapsed time per step done in it.
    phase: Mapped[str | None] = mapped_column(String(16))
    phase_started_at: Mapped[datetime | None]
    phase_start_step: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The implantation's losses over its steps, thinned to a few hundred points (common/jobs/loss_curve.py), for the
    # dashboard's plot; deferred: only that page loads it.
    loss_history: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, deferred=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    subjects: Mapped[list[Subject]] = relationship(secondary=job_subjects)
    base_model: Mapped[BaseModelEntry | None] = relationship(lazy="joined")
    checkpoint: Mapped[Checkpoint | None] = relationship(
        primaryjoin="ProtectionJob.id == Checkpoint.job_id", viewonly=True, uselist=False, lazy="joined"
    )
