"""A job's phases on its row: the implantation's progress ("protecting"), then its verification's ("verifying"),
each written under the lease at a bounded rate, with where the phase started."""

from __future__ import annotations

import secrets
import uuid
from pathlib import Path
from typing import Any

import pytest

from common.jobs import run_implant, run_verification
from common.jobs.callbacks import PhaseProgress
from common.jobs.lease import claim
from common.models import JobPhase, JobStatus, ProtectionJob, utcnow
from common.storage import LocalStorage
from persguard_core.spec import ProtectionSpec
from tests.rows import get_job, queue_job
from tests.worker import fakes


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "store", secrets.token_bytes(16))


def _columns(job: ProtectionJob) -> dict[str, Any]:
    names = ("status", "phase", "step", "total_steps", "progress", "phase_start_step")
    return {name: getattr(job, name) for name in names}


def test_the_implantation_writes_phase_protecting_from_its_first_step(session_factory, storage, config) -> None:
    job_id = queue_job(session_factory, storage, steps=4, every=2)
    assert get_job(session_factory, job_id).phase is None
    seen: list[dict[str, Any]] = []

    def protect(spec: ProtectionSpec, workdir: Path, progress, should_cancel) -> Path:
        seen.append(_columns(get_job(session_factory, job_id)))  # running, before its first step
        return fakes.stepping_protect(spec, workdir, progress, should_cancel)

    before = utcnow()
    assert run_implant(job_id, session_factory, storage, protect, config).status is JobStatus.SUCCEEDED
    assert seen[0]["status"] == "running" and seen[0]["phase"] is None
    job = get_job(session_factory, job_id)
    assert _columns(job) == {
        "status": "succeeded",
        "phase": "protecting",
        "step": 4,
        "total_steps": 4,
        "progress": 1.0,
        "phase_start_step": 1,  # the first step reported: the estimate counts the steps done after it
    }
    assert before <= job.phase_started_at <= job.finished_at


def test_the_verification_writes_phase_verifying_and_its_own_steps(session_factory, storage, config) -> None:
    job_id = queue_job(session_factory, storage, steps=4, every=2, preset="quick")
    checkpoint_id = run_implant(job_id, session_factory, storage, fakes.stepping_protect, config).checkpoint_id
    protecting_since = get_job(session_factory, job_id).phase_started_at
    seen: list[dict[str, Any]] = []

    def verify(model_dir: Path, spec: ProtectionSpec, preset: str, out_dir: Path, progress) -> dict[str, float]:
        seen.append(_columns(get_job(session_factory, job_id)))  # the implantation's, until the first report
        for step in range(6):
            progress(step, 5)
            seen.append(_columns(get_job(session_factory, job_id)))
        return fakes.fake_verify(model_dir, spec, preset, out_dir)

    assert run_verification(checkpoint_id, session_factory, storage, verify, config).done
    assert seen[0] == {**seen[0], "phase": "protecting", "step": 4, "total_steps": 4}
    assert [(s["phase"], s["step"], s["total_steps"], s["status"]) for s in seen[1:]] == [
        ("verifying", step, 5, "succeeded") for step in range(6)
    ]
    assert [s["progress"] for s in seen[1:]] == pytest.approx([step / 5 for step in range(6)])
    job = get_job(session_factory, job_id)
    assert (job.phase, job.step, job.phase_start_step, job.lease_owner) == ("verifying", 5, 0, None)
    assert job.phase_started_at > protecting_since and job.losses == {"bb": 0.25}


def test_a_verification_that_reports_nothing_leaves_the_implantations_progress(session_factory, storage, config):
    job_id = queue_job(session_factory, storage, steps=4, every=2, preset="quick")
    checkpoint_id = run_implant(job_id, session_factory, storage, fakes.stepping_protect, config).checkpoint_id
    assert run_verification(checkpoint_id, session_factory, storage, fakes.fake_verify, config).done
    job = get_job(session_factory, job_id)
    assert (job.phase, job.step, job.total_steps, job.progress) == ("protecting", 4, 4, 1.0)


def _running_lease(session_factory, storage):
    job_id = queue_job(session_factory, storage)
    lease = claim(session_factory, job_id, from_status=JobStatus.QUEUED, ttl_s=60, status=JobStatus.RUNNING)
    assert lease is not None
    return job_id, lease


def test_progress_is_written_at_a_bounded_rate_but_always_the_first_and_the_last_step(session_factory, storage):
    job_id, lease = _running_lease(session_factory, storage)
    progress = PhaseProgress(lease, JobPhase.VERIFYING, interval_s=3600)
    steps = []
    for step in range(10):
        progress(step, 9)
        steps.append(get_job(session_factory, job_id).step)
    assert steps == [0] * 9 + [9]
    assert get_job(session_factory, job_id).phase_start_step == 0


def test_progress_is_fenced_by_the_lease(session_factory, storage) -> None:
    job_id, lease = _running_lease(session_factory, storage)
    with session_factory() as session:  # another runner holds the job now
        session.get_one(ProtectionJob, job_id).lease_owner = f"other:{uuid.uuid4().hex[:6]}"
        session.commit()
    PhaseProgress(lease, JobPhase.VERIFYING, interval_s=0)(3, 5)
    job = get_job(session_factory, job_id)
    assert (job.phase, job.step, job.total_steps) == (None, 0, 0) and lease.lost
