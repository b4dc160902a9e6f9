"""The job state machine: queued -> running -> succeeded / failed / cancelled, with a fake protect_fn."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from common.db import make_engine, make_session_factory
from common.jobs import InProcessRunner, JobCancelled, execute_job
from common.keys import create_tenant
from common.models import BUILTIN_MODEL_ID, Checkpoint, JobStatus, ProtectionJob, Subject, SubjectImage
from common.storage import LocalStorage
from persguard_core.spec import ProtectionSpec, SubjectSpec


@pytest.fixture
def session_factory(database: str):  # noqa: ANN201
    engine = make_engine(database)
    yield make_session_factory(engine)
    engine.dispose()


def _queue_job(session_factory, storage: LocalStorage, images: int = 3) -> uuid.UUID:  # noqa: ANN001
    with session_factory() as session:
        tenant = create_tenant(session, f"t-{uuid.uuid4().hex[:6]}")
        keys = []
        subject = Subject(tenant_id=tenant.id, name="rex", class_noun="dog")
        for position in range(images):
            data = f"image {position}".encode()
            obj = storage.put_bytes(f"subjects/{uuid.uuid4()}/{position}.png", data)
            keys.append(obj.key)
            subject.images.append(
                SubjectImage(
                    position=position,
                    storage_key=obj.key,
                    sha256=obj.sha256,
                    size_bytes=obj.size,
                    width=1,
                    height=1,
                    original_filename="a.png",
                )
            )
        session.add(subject)
        spec = ProtectionSpec(subjects=[SubjectSpec(name="rex", class_noun="dog", images=keys)])
        job = ProtectionJob(
            tenant_id=tenant.id,
            base_model_id=BUILTIN_MODEL_ID,
            spec=spec.model_dump(mode="json"),
            verification_preset="quick",
            subjects=[subject],
        )
        session.add(job)
        session.commit()
        return job.id


def fake_protect(spec: ProtectionSpec, workdir: Path, progress, should_cancel) -> Path:  # noqa: ANN001
    """Writes a tiny 'model' and reports three steps; proves the images arrived as local files."""
    out = workdir / "model"
    out.mkdir()
    for step in range(1, 4):
        progress(step, 3, {"bb": 1.0 / step})
    images = [Path(p).read_bytes() for p in spec.subjects[0].images]
    (out / "unet.safetensors").write_bytes(b"".join(images))
    (out / "model_index.json").write_text("{}")
    return out


def _job(session_factory, job_id: uuid.UUID) -> ProtectionJob:  # noqa: ANN001
    with session_factory() as session:
        return session.get_one(ProtectionJob, job_id)


def test_successful_job_uploads_checkpoint_with_manifest(session_factory, tmp_path: Path) -> None:  # noqa: ANN001
    storage = LocalStorage(tmp_path / "store", b"k")
    job_id = _queue_job(session_factory, storage)
    assert execute_job(job_id, session_factory, storage, fake_protect, tmp_path / "work") is JobStatus.SUCCEEDED
    job = _job(session_factory, job_id)
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


def test_the_core_fails_a_job_whose_images_do_not_decode_with_a_clear_error(session_factory, tmp_path: Path) -> None:  # noqa: ANN001
    storage = LocalStorage(tmp_path / "store", b"k")
    job_id = _queue_job(session_factory, storage)  # its "images" are short byte strings, not images
    assert execute_job(job_id, session_factory, storage, workdir_root=tmp_path) is JobStatus.FAILED
    job = _job(session_factory, job_id)
    assert job.status == "failed" and "cannot identify image file" in job.error
    assert job.finished_at is not None


def test_out_of_memory_in_protect_fn_fails_the_job_reported_as_such(session_factory, tmp_path: Path) -> None:  # noqa: ANN001
    storage = LocalStorage(tmp_path / "store", b"k")
    job_id = _queue_job(session_factory, storage)

    def crash(*_args: object) -> Path:
        raise RuntimeError("CUDA out of memory")

    execute_job(job_id, session_factory, storage, crash, tmp_path)
    assert _job(session_factory, job_id).error == "out of memory: RuntimeError: CUDA out of memory"


def test_cancel_flag_seen_by_protect_fn_cancels_the_job(session_factory, tmp_path: Path) -> None:  # noqa: ANN001
    storage = LocalStorage(tmp_path / "store", b"k")
    job_id = _queue_job(session_factory, storage)

    def cancellable(spec, workdir, progress, should_cancel) -> Path:  # noqa: ANN001
        with session_factory() as session:
            session.get_one(ProtectionJob, job_id).cancel_requested = True
            session.commit()
        if should_cancel():
            raise JobCancelled
        return workdir

    assert execute_job(job_id, session_factory, storage, cancellable, tmp_path) is JobStatus.CANCELLED
    assert _job(session_factory, job_id).status == "cancelled"
    with session_factory() as session:
        assert session.scalar(select(Checkpoint)) is None


def test_job_that_is_not_queued_is_left_alone(session_factory, tmp_path: Path) -> None:  # noqa: ANN001
    storage = LocalStorage(tmp_path / "store", b"k")
    job_id = _queue_job(session_factory, storage)
    execute_job(job_id, session_factory, storage, fake_protect, tmp_path)
    assert execute_job(job_id, session_factory, storage, fake_protect, tmp_path) is None
    assert _job(session_factory, job_id).attempts == 1


def test_missing_subject_image_fails_with_a_clear_message(session_factory, tmp_path: Path) -> None:  # noqa: ANN001
    storage = LocalStorage(tmp_path / "store", b"k")
    job_id = _queue_job(session_factory, storage)
    with session_factory() as session:
        key = session.scalars(select(SubjectImage.storage_key)).first()
    storage.delete(key)
    execute_job(job_id, session_factory, storage, fake_protect, tmp_path)
    assert "cannot read image" in _job(session_factory, job_id).error


def test_in_process_runner_runs_jobs_in_a_background_thread(session_factory, tmp_path: Path) -> None:  # noqa: ANN001
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
    assert [_job(session_factory, j).status for j in job_ids] == ["succeeded", "succeeded"]
    assert all(name.startswith("persguard-job") for name in threads)
