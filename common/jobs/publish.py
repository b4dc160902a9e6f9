"""Publishing a protection: archive the model folder, upload it (multipart, sha256), write the checkpoint row."""

from __future__ import annotations

import logging
import tarfile
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select, update

from common.db import SessionFactory
from common.jobs.lease import Lease
from common.models import BaseModelEntry, Checkpoint, JobStatus, ProtectionJob, utcnow
from common.storage import Storage, sha256_file

log = logging.getLogger(__name__)
CHECKPOINT_NAMESPACE = uuid.UUID("9b7c4a52-3c1e-4f7e-9d55-6a7f0b8f2e11")


def checkpoint_id_for(job_id: uuid.UUID) -> uuid.UUID:
    """A job's checkpoint id, the same on every attempt: a re-upload overwrites the same object, never adds one."""
    return uuid.uuid5(CHECKPOINT_NAMESPACE, str(job_id))


def checkpoint_key(checkpoint_id: uuid.UUID) -> str:
    return f"checkpoints/{checkpoint_id}/model.tar"


def archive_folder(folder: Path, target: Path) -> dict[str, Any]:
    """Tar `folder` into `target`; the manifest lists every file with its size and sha256."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if not files:
        raise RuntimeError(f"protection produced no files in {folder}")
    with tarfile.open(target, "w") as tar:
        for path in files:
            tar.add(path, arcname=path.relative_to(folder).as_posix())
    entries = [
        {"path": p.relative_to(folder).as_posix(), "size": p.stat().st_size, "sha256": sha256_file(p)} for p in files
    ]
    return {"format": "tar", "files": entries}


class PublishRefused(Exception):
    """The job was cancelled, or the lease lost, between the end of training and the checkpoint row."""

    def __init__(self, cancelled: bool) -> None:
        super().__init__("cancelled" if cancelled else "lease lost")
        self.cancelled = cancelled


class AlreadyPublished(RuntimeError):
    """The job's checkpoint is already published (a checkpoint row names it): its object is never replaced."""


def publish(
    session_factory: SessionFactory, storage: Storage, lease: Lease, output: Path, workdir: Path, *, verify: bool
) -> uuid.UUID:
    """Upload `output` and, in one transaction fenced by the lease, write the checkpoint row and mark the job
    succeeded (with the verify doorbell's time when `verify`). Raises PublishRefused if the job was cancelled
    (the upload is removed) or the lease lost (the new holder publishes to the same key); both are checked before
    the upload too (fenced), so a runner that lost its lease writes nothing, and AlreadyPublished if the
    checkpoint is published already: a published object is never replaced."""
    job_id = lease.job_id
    checkpoint_id = checkpoint_id_for(job_id)
    archive = workdir / "checkpoint.tar"
    manifest = archive_folder(output, archive)
    _check_may_upload(session_factory, lease, checkpoint_id)
    stored = storage.put_file(checkpoint_key(checkpoint_id), archive)
    lease.stop_heartbeat()  # the transaction below ends the lease; a beat racing it would read as a lost lease
    with session_factory() as session:
        job = session.get_one(ProtectionJob, job_id)
        base = session.get(BaseModelEntry, job.base_model_id) if job.base_model_id else None
        manifest.update(job_id=str(job_id), base_model=job.spec.get("base_model"), spec_version=job.spec.get("version"))
        now = utcnow()
        result = session.execute(
            update(ProtectionJob)
            .where(
                ProtectionJob.id == job_id,
                ProtectionJob.lease_owner == lease.owner,
                ProtectionJob.status == JobStatus.RUNNING,
                ProtectionJob.cancel_requested.is_(False),
            )
            .values(
                status=JobStatus.SUCCEEDED,
                progress=1.0,
                finished_at=now,
                updated_at=now,
                lease_owner=None,
                lease_expires_at=None,
                enqueued_at=now if verify else None,
                error=None,
            )
        )
        if result.rowcount != 1:
            session.rollback()
            cancelled = bool(session.get_one(ProtectionJob, job_id, populate_existing=True).cancel_requested)
            if cancelled:
                storage.delete(stored.key)
            raise PublishRefused(cancelled)
        session.add(
            Checkpoint(
                id=checkpoint_id,
                tenant_id=job.tenant_id,
                job_id=job_id,
                parent_id=base.checkpoint_id if base else None,
                storage_key=stored.key,
                size_bytes=stored.size,
                sha256=stored.sha256,
                manifest=manifest,
            )
        )
        session.commit()
    log.info("job %s published checkpoint %s (%d bytes)", job_id, checkpoint_id, stored.size)
    return checkpoint_id


def _check_may_upload(session_factory: SessionFactory, lease: Lease, checkpoint_id: uuid.UUID) -> None:
    """Before anything is written to the checkpoint's key: the job must still be running under our lease, not
    cancelled (the lease is renewed here, so that it outlasts the upload), and its checkpoint not published yet
    (a checkpoint row names it). Raises PublishRefused or AlreadyPublished."""
    now = utcnow()
    with session_factory() as session:
        result = session.execute(
            update(ProtectionJob)
            .where(
                ProtectionJob.id == lease.job_id,
                ProtectionJob.lease_owner == lease.owner,
                ProtectionJob.status == JobStatus.RUNNING,
                ProtectionJob.cancel_requested.is_(False),
            )
            .values(heartbeat_at=now, lease_expires_at=now + timedelta(seconds=lease.ttl_s), updated_at=now)
        )
        if result.rowcount != 1:
            session.rollback()
            job = session.get(ProtectionJob, lease.job_id, populate_existing=True)
            cancelled = job is not None and job.lease_owner == lease.owner and bool(job.cancel_requested)
            if not cancelled:
                lease.lost = True
            log.warning("job %s: not publishing: %s", lease.job_id, "cancelled" if cancelled else "lease lost")
            raise PublishRefused(cancelled)
        published = session.scalar(
            select(Checkpoint.id).where(or_(Checkpoint.id == checkpoint_id, Checkpoint.job_id == lease.job_id))
        )
        if published is not None:
            session.rollback()
            raise AlreadyPublished(
                f"checkpoint {published} of job {lease.job_id} is already published; not replacing it"
            )
        session.commit()
