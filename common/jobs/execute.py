"""Running one protection job: the state machine around the core's implantation.

`execute_job` is what any runner calls with a job id: the in-process runner here, the Celery worker later.
It claims the row (queued -> running), resolves the spec's storage keys to files, calls a pluggable
`protect_fn(spec, workdir, progress, should_cancel) -> Path`, archives and uploads the returned folder,
writes the checkpoint row and ends the job as succeeded, failed or cancelled.
"""

from __future__ import annotations

import logging
import shutil
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from common.db import SessionFactory
from common.models import BaseModelEntry, Checkpoint, JobStatus, ProtectionJob, SubjectImage, utcnow
from common.storage import Storage, StorageError, sha256_file
from persguard_core.spec import ProtectionSpec

log = logging.getLogger(__name__)
PROGRESS_INTERVAL_S = 1.0

ProgressFn = Callable[[int, int, dict[str, float]], None]
CancelFn = Callable[[], bool]
ProtectFn = Callable[[ProtectionSpec, Path, ProgressFn, CancelFn], Path]


class JobCancelled(Exception):
    """Raised by a protect_fn (or found after it returns) when the job's cancel flag is set."""


class JobInputError(RuntimeError):
    """The job's inputs cannot be resolved (a subject was deleted, an image is missing or corrupt)."""


def default_protect_fn(spec: ProtectionSpec, workdir: Path, progress: ProgressFn, should_cancel: CancelFn) -> Path:
    """The core's implantation (persguard_core.protect); returns the publishable model folder.

    The core's own training state lives under `workdir/protection/private/state`, so a retry in the same
    workdir resumes instead of restarting.
    """
    from persguard_core.implant.loop import ImplantCancelled
    from persguard_core.protect import protect

    try:
        result = protect(
            spec,
            workdir / "protection",
            progress=lambda event: progress(event.step, event.total, event.losses),
            should_cancel=should_cancel,
        )
    except ImplantCancelled as exc:
        raise JobCancelled(str(exc)) from exc
    return result.model_dir


def execute_job(
    job_id: uuid.UUID,
    session_factory: SessionFactory,
    storage: Storage,
    protect_fn: ProtectFn = default_protect_fn,
    workdir_root: Path | None = None,
) -> JobStatus | None:
    """Run job `job_id` if it is queued; returns its final status, or None if another runner took it."""
    if not _claim(session_factory, job_id):
        log.info("job %s is not queued; skipping", job_id)
        return None
    log.info("job %s running", job_id)
    workdir_root = workdir_root or Path(tempfile.gettempdir())
    workdir_root.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"job-{job_id}-", dir=workdir_root))
    try:
        status, error = _run(job_id, session_factory, storage, protect_fn, workdir), None
    except JobCancelled:
        status, error = JobStatus.CANCELLED, "cancelled on request"
    except JobInputError as exc:
        status, error = JobStatus.FAILED, str(exc)
    except Exception as exc:
        log.exception("job %s failed", job_id)
        status, error = JobStatus.FAILED, f"{type(exc).__name__}: {exc}"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if status is not JobStatus.SUCCEEDED:
        _finish(session_factory, job_id, status, error)
    log.info("job %s %s%s", job_id, status, f": {error}" if error else "")
    return status


def _claim(session_factory: SessionFactory, job_id: uuid.UUID) -> bool:
    with session_factory() as session:
        now = utcnow()
        result = session.execute(
            update(ProtectionJob)
            .where(ProtectionJob.id == job_id, ProtectionJob.status == JobStatus.QUEUED)
            .values(
                status=JobStatus.RUNNING,
                started_at=now,
                finished_at=None,
                updated_at=now,
                attempts=ProtectionJob.attempts + 1,
                error=None,
            )
        )
        session.commit()
        return result.rowcount == 1


def _run(
    job_id: uuid.UUID, session_factory: SessionFactory, storage: Storage, protect_fn: ProtectFn, workdir: Path
) -> JobStatus:
    with session_factory() as session:
        job = session.get_one(ProtectionJob, job_id)
        spec = ProtectionSpec.model_validate(job.spec)
        local_spec = _resolve_inputs(session, storage, spec, workdir / "inputs")

    last_write = [0.0]

    def progress(step: int, total: int, losses: dict[str, float]) -> None:
        """Write progress at most every PROGRESS_INTERVAL_S seconds (and always on the last step)."""
        now = time.monotonic()
        if step >= total or now - last_write[0] >= PROGRESS_INTERVAL_S:
            last_write[0] = now
            _write_progress(session_factory, job_id, step, total, losses)

    def should_cancel() -> bool:
        with session_factory() as session:
            return bool(session.scalar(select(ProtectionJob.cancel_requested).where(ProtectionJob.id == job_id)))

    output = protect_fn(local_spec, workdir, progress, should_cancel)
    if should_cancel():
        raise JobCancelled
    return _publish(session_factory, storage, job_id, Path(output), workdir)


def _resolve_inputs(session: Any, storage: Storage, spec: ProtectionSpec, dest: Path) -> ProtectionSpec:
    """The spec with every subject image key replaced by a verified local copy."""
    keys = [key for subject in spec.subjects for key in subject.images]
    recorded = dict(
        session.execute(
            select(SubjectImage.storage_key, SubjectImage.sha256).where(SubjectImage.storage_key.in_(keys))
        ).all()
    )
    subjects = []
    for index, subject in enumerate(spec.subjects):
        paths = []
        for position, key in enumerate(subject.images):
            if key not in recorded:
                raise JobInputError(f"image {key} of subject {subject.name} is gone (was the subject deleted?)")
            target = dest / str(index) / f"{position:02d}.png"
            try:
                storage.get_to_file(key, target, expected_sha256=recorded[key])
            except StorageError as exc:
                raise JobInputError(f"cannot read image {key} of subject {subject.name}: {exc}") from exc
            paths.append(str(target))
        subjects.append({**subject.model_dump(), "images": paths})
    return ProtectionSpec.model_validate({**spec.model_dump(), "subjects": subjects})


def _write_progress(
    session_factory: SessionFactory, job_id: uuid.UUID, step: int, total: int, losses: dict[str, float]
) -> None:
    with session_factory() as session:
        session.execute(
            update(ProtectionJob)
            .where(ProtectionJob.id == job_id)
            .values(
                step=step,
                total_steps=total,
                progress=min(1.0, step / total) if total else 0.0,
                losses={k: float(v) for k, v in losses.items()},
                updated_at=utcnow(),
            )
        )
        session.commit()


def _archive(folder: Path, target: Path) -> dict[str, Any]:
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


def _publish(
    session_factory: SessionFactory, storage: Storage, job_id: uuid.UUID, output: Path, workdir: Path
) -> JobStatus:
    checkpoint_id = uuid.uuid4()
    archive = workdir / "checkpoint.tar"
    manifest = _archive(output, archive)
    stored = storage.put_file(f"checkpoints/{checkpoint_id}/model.tar", archive)
    with session_factory() as session:
        job = session.get_one(ProtectionJob, job_id)
        base = session.get(BaseModelEntry, job.base_model_id) if job.base_model_id else None
        manifest.update(job_id=str(job_id), base_model=job.spec.get("base_model"), spec_version=job.spec.get("version"))
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
        now = utcnow()
        job.status, job.progress, job.finished_at, job.updated_at = JobStatus.SUCCEEDED, 1.0, now, now
        session.commit()
    return JobStatus.SUCCEEDED


def _finish(session_factory: SessionFactory, job_id: uuid.UUID, status: JobStatus, error: str | None) -> None:
    with session_factory() as session:
        now = utcnow()
        session.execute(
            update(ProtectionJob)
            .where(ProtectionJob.id == job_id, ProtectionJob.status == JobStatus.RUNNING)
            .values(status=status, error=error, finished_at=now, updated_at=now)
        )
        session.commit()
