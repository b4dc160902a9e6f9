"""The storage sweep (`purge`): orphaned objects and unfinished uploads go, everything a row needs stays."""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from common.db import make_engine, make_session_factory
from common.jobs import JobConfig, run_implant
from common.jobs.training_state import state_key
from common.models import JobStatus, ProtectionJob, utcnow
from common.storage import LocalStorage
from tests.rows import queue_job
from tests.worker import fakes
from worker.sweep import sweep_storage


@pytest.fixture
def session_factory(database: str):
    engine = make_engine(database)
    yield make_session_factory(engine)
    engine.dispose()


def test_sweep_removes_orphans_and_stale_uploads_and_keeps_what_rows_refer_to(
    session_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_STEP_S", "0")
    storage = LocalStorage(tmp_path / "store", secrets.token_bytes(16))
    config = JobConfig(workdir_root=tmp_path / "work")
    done = queue_job(session_factory, storage)
    assert run_implant(done, session_factory, storage, fakes.stepping_protect, config).status is JobStatus.SUCCEEDED
    running = queue_job(session_factory, storage, status=JobStatus.RUNNING)
    keep = {o.key for o in storage.list_objects("")}
    storage.put_bytes(state_key(running), b"resumable")
    keep.add(state_key(running))

    orphans = {
        f"subjects/{uuid.uuid4()}/00.png",  # a subject upload whose row never came
        f"checkpoints/{uuid.uuid4()}/model.tar",  # an archive whose checkpoint row never came
        f"reports/{uuid.uuid4()}/{uuid.uuid4()}/report.json",
        state_key(done),  # the state of a job that succeeded
        state_key(uuid.uuid4()),  # the state of a job that is gone
    }
    for key in orphans:
        storage.put_bytes(key, b"x")
    unfinished = storage.root / "checkpoints" / ".upload-abc"
    unfinished.write_bytes(b"half")
    foreign = storage.put_bytes("elsewhere/readme.txt", b"not ours").key

    fresh = sweep_storage(session_factory, storage, grace_s=3600, failed_retention_s=0)
    assert fresh.deleted == [] and unfinished.exists(), "nothing younger than the grace period is touched"

    later = utcnow() + timedelta(hours=2)
    report = sweep_storage(session_factory, storage, grace_s=3600, failed_retention_s=0, now=later)
    assert set(report.deleted) == orphans and report.aborted_uploads == 1
    assert {o.key for o in storage.list_objects("")} == keep | {foreign}
    with session_factory() as session:
        assert session.get_one(ProtectionJob, running).status == "running"
