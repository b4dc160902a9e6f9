"""The storage sweep: remove objects no row refers to, training state nobody will resume, unfinished uploads.

Every rule waits `grace_s` after an object's last change, so that an upload whose row is about to be written
(a subject's images, a checkpoint, a report) is never taken for an orphan.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select

from common.db import SessionFactory
from common.models import Checkpoint, JobStatus, ProtectionJob, SubjectImage, VerificationReport, utcnow
from common.storage import ListedObject, Storage

log = logging.getLogger(__name__)


@dataclass
class SweepReport:
    deleted: list[str] = field(default_factory=list)
    aborted_uploads: int = 0


def _uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def _orphans(
    session_factory: SessionFactory, objects: list[ListedObject], now: datetime, failed_retention_s: float
) -> list[str]:
    """Keys among `objects` (all past the grace period) that nothing needs any more."""
    keys = [o.key for o in objects]
    ids = {part for key in keys for part in key.split("/")[1:3] if _uuid(part)}
    uuids = [uuid.UUID(i) for i in ids]
    with session_factory() as session:
        images = set(session.scalars(select(SubjectImage.storage_key).where(SubjectImage.storage_key.in_(keys))))
        checkpoints = {str(i) for i in session.scalars(select(Checkpoint.id).where(Checkpoint.id.in_(uuids)))}
        report_ids = select(VerificationReport.id).where(VerificationReport.id.in_(uuids))
        reports = {str(i) for i in session.scalars(report_ids)}
        jobs = {
            str(job_id): (status, finished)
            for job_id, status, finished in session.execute(
                select(ProtectionJob.id, ProtectionJob.status, ProtectionJob.finished_at).where(
                    ProtectionJob.id.in_(uuids)
                )
            )
        }
    retention = now - timedelta(seconds=failed_retention_s)
    orphans = []
    for key in keys:
        kind, *parts = key.split("/")
        if kind == "subjects":
            orphan = key not in images
        elif kind == "checkpoints" and parts:
            orphan = parts[0] not in checkpoints
        elif kind == "reports" and len(parts) > 1:
            orphan = parts[1] not in reports
        elif kind == "jobs" and parts:
            status, finished = jobs.get(parts[0], (None, None))
            orphan = status in (None, JobStatus.SUCCEEDED, JobStatus.CANCELLED) or (
                status == JobStatus.FAILED and finished is not None and finished < retention
            )
        else:
            orphan = False  # not ours: leave it
        if orphan:
            orphans.append(key)
    return orphans


def sweep_storage(
    session_factory: SessionFactory,
    storage: Storage,
    grace_s: float,
    failed_retention_s: float,
    now: datetime | None = None,
) -> SweepReport:
    """Delete orphaned objects and abort unfinished uploads older than `grace_s`."""
    now = now or utcnow()
    cutoff = now - timedelta(seconds=grace_s)
    report = SweepReport(aborted_uploads=storage.abort_stale_uploads(cutoff))
    for prefix in ("subjects/", "checkpoints/", "reports/", "jobs/"):
        old = [o for o in storage.list_objects(prefix) if o.last_modified < cutoff]
        for start in range(0, len(old), 500):
            for key in _orphans(session_factory, old[start : start + 500], now, failed_retention_s):
                storage.delete(key)
                report.deleted.append(key)
    if report.deleted or report.aborted_uploads:
        log.info("sweep: deleted %d orphaned objects, aborted %d uploads", len(report.deleted), report.aborted_uploads)
    return report
