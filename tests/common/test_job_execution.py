"""The job state machine: queued -> running -> succeeded / failed / cancelled, with a fake protect_fn."""

from __future__ import annotations

import hashlib
import io
import logging
import tarfile
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from common.jobs import InProcessRunner, JobCancelled, run_implant
from common.jobs.config import JobConfig
from common.jobs.errors import INTERNAL_ERROR, OUT_OF_MEMORY, UNREADABLE_IMAGE
from common.jobs.execute import ProtectFn, default_protect_fn
from common.models import Checkpoint, JobStatus, ProtectionJob, SubjectImage
from common.storage import LocalStorage
from persguard_core.spec import ProtectionSpec
from tests.rows import get_job, queue_job


def _queue_job(session_factory, storage: LocalStorage) -> uuid.UUID:
    """A queued job whose three "images" are the bytes b"image 0", b"image 1", b"image 2" (not images)."""
    return queue_job(session_factory, storage, preset="quick", image=lambda position: f"image {position}".encode())


def execute_job(
    job_id: uuid.UUID,
    session_factory: Callable[[], Session],
    storage: LocalStorage,
    protect_fn: ProtectFn = default_protect_fn,
    workdir_root: Path | None = None,
) -> JobStatus | None:
    """Run the job once, as a runner's last attempt would: its final status, or None if it was not ours."""
    config = JobConfig(workdir_root=workdir_root)
    return run_implant(job_id, session_factory, storage, protect_fn, config, final_attempt=True).status


def fake_protect(spec: ProtectionSpec, workdir: Path, progress, should_cancel) -> Path:
    """Writes a tiny 'model' and reports three steps; proves the images arrived as local files."""
    out = workdir / "model"
    out.mkdir()
    for step in range(1, 4):
        progress(step, 3, {"bb": 1.0 / step})
    images = [Path(p).read_bytes() for p in spec.subjects[0].images]
    (out / "unet.safetensors").write_bytes(b"".join(images))
    (out / "model_index.json").write_text("{}")
    return out


def test_successful_job_uploads_checkpoint_with_manifest(session_factory, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store", b"k")
    job_id = _queue_job(session_factory, storage)
    assert execute_job(job_id, session_factory, storage, fake_protect, tmp_path / "work") is JobStatus.SUCCEEDED
    job = get_job(session_factory, job_id)
    assert (job.status, job.progress, job.step, job.attempts) == ("succeeded", 1.0, 3, 1)
    assert job.losses == {"bb": pytest.approx(1 / 3)} and job.started_at <= job.finished_at
    with session_factory() as session:
        checkpoint = session.scalar(select(Checkpoint).where(Checkpoint.job_id == job_id))
    archive = (storage.root / checkpoint.storage_key).read_bytes()
    assert hashlib.sha256(archive).hexdigest() == checkpoint.sha256 and len(archive) == checkpoint.size_bytes
    assert [f["path"] for f in checkpoint.manifest["files"]] == ["model_index.json", "unet.safetensors"]
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        assert tar.extractfile("unet.safetensors").read() == b"image 0image 1image 2"
    assert not list((tmp_path / "work").iterdir()), "the work directory is cleaned up"


def test_the_core_fails_a_job_whose_images_do_not_decode_with_a_clear_error(
    session_factory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage = LocalStorage(tmp_path / "store", b"k")
    job_id = _queue_job(session_factory, storage)  # its "images" are short byte strings, not images
    with caplog.at_level(logging.ERROR, logger="common.jobs.execute"):
        assert execute_job(job_id, session_factory, storage, workdir_root=tmp_path) is JobStatus.FAILED
    job = get_job(session_factory, job_id)
    assert job.status == "failed" and job.error == UNREADABLE_IMAGE
    assert str(tmp_path) not in job.error, "no path of the worker's disk"
    assert "cannot identify image file" in caplog.text, "the detail is in the log"
    assert job.finished_at is not None


def test_out_of_memory_in_protect_fn_fails_the_job_reported_as_such(session_factory, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store", b"k")
    job_id = _queue_job(session_factory, storage)

    def crash(*_args: object) -> Path:
        raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB on GPU 0 (host gpu-node-7)")

    execute_job(job_id, session_factory, storage, crash, tmp_path)
    assert get_job(session_factory, job_id).error == OUT_OF_MEMORY


def test_an_unexpected_error_is_stored_as_a_stable_message_and_logged_in_full(
    session_factory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage = LocalStorage(tmp_path / "store", b"k")
    job_id = _queue_job(session_factory, storage)
    secret = "connect to postgresql://svc:hunter2@10.0.0.5/prod failed in /srv/persguard/secret.py"

    def crash(*_args: object) -> Path:
        raise KeyError(secret)

    with caplog.at_level(logging.ERROR, logger="common.jobs.execute"):
        assert execute_job(job_id, session_factory, storage, crash, tmp_path) is JobStatus.FAILED
    job = get_job(session_factory, job_id)
    assert job.error == INTERNAL_ERROR
    assert "hunter2" in caplog.text and str(job_id) in caplog.text, "the detail stays in the log, with the job id"
    assert "hunter2" not in job.error and "KeyError" not in job.error and "/srv" not in job.error


def test_cancel_flag_seen_by_protect_fn_cancels_the_job(session_factory, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store", b"k")
    job_id = _queue_job(session_factory, storage)

    def cancellable(spec, workdir, progress, should_cancel) -> Path:
        with session_factory() as session:
            session.get_one(ProtectionJob, job_id).cancel_requested = True
            session.commit()
        if should_cancel():
            raise JobCancelled
        return workdir

    assert execute_job(job_id, session_factory, storage, cancellable, tmp_path) is JobStatus.CANCELLED
    assert get_job(session_factory, job_id).status == "cancelled"
    with session_factory() as session:
        assert session.scalar(select(Checkpoint)) is None


def test_job_that_is_not_queued_is_left_alone(session_factory, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store", b"k")
    job_id = _queue_job(session_factory, storage)
    execute_job(job_id, session_factory, storage, fake_protect, tmp_path)
    assert execute_job(job_id, session_factory, storage, fake_protect, tmp_path) is None
    assert get_job(session_factory, job_id).attempts == 1


def test_missing_subject_image_fails_with_a_clear_message(session_factory, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store", b"k")
    job_id = _queue_job(session_factory, storage)
    with session_factory() as session:
        key = session.scalars(select(SubjectImage.storage_key)).first()
    storage.delete(key)
    execute_job(job_id, session_factory, storage, fake_protect, tmp_path)
    error = get_job(session_factory, job_id).error
    assert error.startswith(f"cannot read image {key} of subject ") and "missing" in error
    assert "local storage" not in error and str(tmp_path) not in error, "not the storage's own words"


def test_in_process_runner_runs_jobs_in_a_background_thread(session_factory, tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store", b"k")
    threads: list[str] = []

    def recording(*args: object) -> Path:
        threads.append(threading.current_thread().name)
        return fake_protect(*args)  # type: ignore[arg-type]

    runner = InProcessRunner(session_factory, storage, recording, workdir=tmp_path / "work")
    job_ids: list[uuid.UUID] = [_queue_job(session_factory, storage) for _ in range(2)]
    for job_id in job_ids:
        runner.submit(job_id)
    assert runner.wait_idle(timeout=30)
    runner.shutdown()
    assert [get_job(session_factory, j).status for j in job_ids] == ["succeeded", "succeeded"]
    assert all(name.startswith("persguard-job") for name in threads)
