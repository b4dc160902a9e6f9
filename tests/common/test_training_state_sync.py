"""Training state in storage: the service's name for the core's file, the sha256 recorded under the lease and
checked on restore, fenced uploads, and the upload interval."""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import shutil
import uuid
from pathlib import Path

import pytest
from sqlalchemy import update

from common.jobs import JobConfig, run_implant
from common.jobs.lease import claim
from common.jobs.training_state import STATE_FILE, TrainingStateSync, state_key
from common.models import JobStatus, ProtectionJob
from common.settings import Settings
from common.storage import LocalStorage, StorageError, StoredObject
from persguard_core import training_state
from tests.rows import get_job, queue_job
from tests.worker import fakes


def test_the_service_syncs_the_file_the_core_writes_under_the_same_name():
    job = uuid.uuid4()
    assert STATE_FILE.name == training_state.STATE_FILE_NAME == "state.safetensors"
    assert STATE_FILE.parent.as_posix() == "protection/private/state"  # protect(spec, workdir / "protection")
    assert state_key(job) == f"jobs/{job}/state/state.safetensors"


class CountingStorage(LocalStorage):
    """Local storage that remembers the keys it was asked to store a file under."""

    def __init__(self, root: Path, secret: bytes) -> None:
        super().__init__(root, secret)
        self.put_keys: list[str] = []

    def put_file(self, key: str, path: Path) -> StoredObject:
        self.put_keys.append(key)
        return super().put_file(key, path)


@pytest.fixture
def storage(tmp_path: Path) -> CountingStorage:
    return CountingStorage(tmp_path / "store", secrets.token_bytes(16))


def _dies_at(step_to_die: int, exc: Exception):
    def protect(spec, workdir, progress, should_cancel):
        def progress_then_die(step: int, total: int, losses: dict) -> None:
            progress(step, total, losses)
            if step == step_to_die:
                raise exc

        return fakes.stepping_protect(spec, workdir, progress_then_die, should_cancel)

    return protect


def _resumed_from(seen: dict):
    def protect(spec, workdir, progress, should_cancel):
        out = fakes.stepping_protect(spec, workdir, progress, should_cancel)
        seen.update(json.loads((out / "model_index.json").read_text()))
        return out

    return protect


def _write_state(workdir: Path, step: int) -> Path:
    path = workdir / STATE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"step": step}))
    tmp.replace(path)
    return path


def test_the_uploaded_states_sha256_is_recorded_with_its_step(session_factory, storage, config) -> None:
    job_id = queue_job(session_factory, storage, steps=8, every=2)
    first = run_implant(
        job_id, session_factory, storage, _dies_at(5, StorageError("reset")), config, final_attempt=False
    )
    assert first.status is JobStatus.QUEUED
    job = get_job(session_factory, job_id)
    stored = (storage.root / state_key(job_id)).read_bytes()
    assert json.loads(stored) == {"step": 4}
    assert (job.state_step, job.state_sha256) == (4, hashlib.sha256(stored).hexdigest())


@pytest.mark.parametrize("how", ["tampered", "unrecorded"])
def test_a_stored_state_that_does_not_match_the_recorded_sha256_is_discarded_and_training_starts_over(
    session_factory, storage, config, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    job_id = queue_job(session_factory, storage, steps=8, every=2)
    run_implant(job_id, session_factory, storage, _dies_at(5, StorageError("reset")), config, final_attempt=False)
    for old in config.workdir_root.glob("job-*"):  # a retry on another machine: nothing local is left
        shutil.rmtree(old)
    if how == "tampered":  # or a stale worker's late upload: other bytes than those recorded
        storage.put_bytes(state_key(job_id), json.dumps({"step": 6}).encode())
    else:  # an object no upload under the lease recorded
        with session_factory() as session:
            session.execute(update(ProtectionJob).where(ProtectionJob.id == job_id).values(state_sha256=None))
            session.commit()
    seen: dict = {}
    with caplog.at_level(logging.WARNING, logger="common.jobs.training_state"):
        outcome = run_implant(job_id, session_factory, storage, _resumed_from(seen), config)
    assert outcome.status is JobStatus.SUCCEEDED
    assert seen["resumed_from"] == 0, "the state was not loaded"
    assert any("discard" in record.getMessage() for record in caplog.records), caplog.text


def test_a_runner_that_lost_its_lease_does_not_overwrite_the_stored_state(session_factory, storage, tmp_path) -> None:
    job_id = queue_job(session_factory, storage)
    lease = claim(session_factory, job_id, from_status=JobStatus.QUEUED, ttl_s=60, status=JobStatus.RUNNING)
    assert lease is not None
    theirs = storage.put_bytes(state_key(job_id), json.dumps({"step": 6}).encode())
    with session_factory() as session:  # the job was handed to another runner, which saved its state of step 6
        session.execute(
            update(ProtectionJob)
            .where(ProtectionJob.id == job_id)
            .values(lease_owner="other:1:abcd", state_step=6, state_sha256=theirs.sha256)
        )
        session.commit()
    sync = TrainingStateSync(storage, lease, tmp_path / "work")
    _write_state(tmp_path / "work", 2)
    sync.on_progress(2)
    sync.wait(timeout=30)
    assert json.loads((storage.root / state_key(job_id)).read_bytes()) == {"step": 6}
    job = get_job(session_factory, job_id)
    assert (job.state_step, job.state_sha256) == (6, theirs.sha256) and lease.lost
    assert storage.put_keys == [], "nothing was uploaded"


def test_the_default_state_upload_interval_limits_uploads_whatever_checkpoint_every_is(
    session_factory, storage, config
) -> None:
    assert JobConfig().state_upload_interval_s == Settings().state_upload_interval_s > 0
    job_id = queue_job(session_factory, storage, steps=40, every=1)  # a state file after every step
    outcome = run_implant(job_id, session_factory, storage, _dies_at(30, RuntimeError("boom")), config)
    assert outcome.status is JobStatus.FAILED
    uploads = [key for key in storage.put_keys if key == state_key(job_id)]
    assert len(uploads) == 2, "the first state, then (ending the job) the last one; none in between"
    assert json.loads((storage.root / state_key(job_id)).read_bytes()) == {"step": 30}
    assert get_job(session_factory, job_id).state_step == 30
