"""Per-tenant limits: active jobs, registered subjects, stored bytes of subject images (PERSGUARD_MAX_*_PER_TENANT).

Each check counts in the database, so every API process sees the same totals. A check that precedes a write locks
the tenant's row first (Postgres `FOR NO KEY UPDATE`, held until the write commits), so that two concurrent requests
of one tenant cannot both take the last place; foreign-key checks of other writes (workers' rows) do not wait on
that lock. SQLite has no row locks: there, concurrent requests may pass a limit by the few that raced.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.services.errors import QuotaExceeded
from common.models import JobStatus, ProtectionJob, Subject, SubjectImage, SubjectStatus, Tenant
from common.settings import Settings

# Retry-After of each refusal. A job place frees itself when a job ends (a `fast` job takes about 20 s, a `default`
# one about a minute); subjects and their bytes are freed only by deleting subjects, so asking again soon is futile.
JOBS_RETRY_AFTER_S = 60
SUBJECTS_RETRY_AFTER_S = 3600


@dataclass(frozen=True)
class Quotas:
    """The limits of every tenant."""

    max_active_jobs: int
    max_subjects: int
    max_subject_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Quotas:
        return cls(
            max_active_jobs=settings.max_active_jobs_per_tenant,
            max_subjects=settings.max_subjects_per_tenant,
            max_subject_bytes=settings.max_subject_bytes_per_tenant,
        )


def lock_tenant(session: Session, tenant_id: uuid.UUID) -> None:
    """Serialise this tenant's quota checks until the session commits or rolls back (a no-op on SQLite)."""
    session.execute(select(Tenant.id).where(Tenant.id == tenant_id).with_for_update(key_share=True))


def check_active_jobs(session: Session, tenant_id: uuid.UUID, quotas: Quotas) -> None:
    """QuotaExceeded if the tenant already has its limit of queued and running jobs; locks the tenant first."""
    lock_tenant(session, tenant_id)
    active = session.scalar(
        select(func.count())
        .select_from(ProtectionJob)
        .where(ProtectionJob.tenant_id == tenant_id, ProtectionJob.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]))
    )
    if (active or 0) >= quotas.max_active_jobs:
        raise QuotaExceeded(
            f"the tenant has {active} active jobs (queued or running); the limit is {quotas.max_active_jobs}: "
            "wait for one to finish, or cancel one with POST /v1/jobs/{id}/cancel",
            quota="active_jobs",
            retry_after_s=JOBS_RETRY_AFTER_S,
        )


def check_new_subject(session: Session, tenant_id: uuid.UUID, new_bytes: int, quotas: Quotas, *, lock: bool) -> None:
    """QuotaExceeded if one more subject, of `new_bytes` of images, would pass the tenant's limits. `lock`: lock the
    tenant first (just before writing the rows; a check without it may run before the slow image uploads)."""
    if lock:
        lock_tenant(session, tenant_id)
    live = Subject.tenant_id == tenant_id, Subject.status != SubjectStatus.DELETED
    subjects = session.scalar(select(func.count()).select_from(Subject).where(*live)) or 0
    if subjects >= quotas.max_subjects:
        raise QuotaExceeded(
            f"the tenant has {subjects} subjects; the limit is {quotas.max_subjects}: delete subjects you no longer "
            "need (DELETE /v1/subjects/{id}) to register new ones",
            quota="subjects",
            retry_after_s=SUBJECTS_RETRY_AFTER_S,
        )
    used = session.scalar(select(func.coalesce(func.sum(SubjectImage.size_bytes), 0)).join(Subject).where(*live)) or 0
    if used + new_bytes > quotas.max_subject_bytes:
        raise QuotaExceeded(
            f"these images take {new_bytes:,} bytes once normalised and the tenant's subjects already store "
            f"{used:,}; the limit is {quotas.max_subject_bytes:,} bytes: delete subjects you no longer need "
            "(DELETE /v1/subjects/{id}), or send fewer or smaller images",
            quota="subject_bytes",
            retry_after_s=SUBJECTS_RETRY_AFTER_S,
        )
