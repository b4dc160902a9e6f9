"""A job's phase and the time left in it (`phase`, `eta_seconds` of GET /v1/jobs/{id})."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from common.jobs import InProcessRunner
from common.models import JobStatus, ProtectionJob, utcnow
from persguard_core.spec import ProtectionSpec
from tests.api.api_testkit import ApiEnv, fake_protect, make_subject, protect

HOLDER = "alpha:rights_holder"


def _set(api: ApiEnv, job_id: str, **values: Any) -> None:
    with api.session_factory() as session:
        session.execute(update(ProtectionJob).where(ProtectionJob.id == uuid.UUID(job_id)).values(**values))
        session.commit()


def _get(api: ApiEnv, job_id: str) -> dict:
    response = api.client.get(f"/v1/jobs/{job_id}", headers=api.auth(HOLDER))
    assert response.status_code == 200, response.text
    return response.json()


def _running(started_s_ago: float, **values: Any) -> dict[str, Any]:
    """Columns of a job whose worker holds a live lease and whose phase started `started_s_ago` seconds ago."""
    now = utcnow()
    return {
        "lease_owner": "host:1:abc",
        "lease_expires_at": now + timedelta(seconds=60),
        "phase_started_at": now - timedelta(seconds=started_s_ago),
        **values,
    }


@pytest.fixture
def api(make_env: Callable[..., ApiEnv]) -> ApiEnv:
    return make_env("sqlite")


def test_a_queued_job_has_no_phase_and_no_time_left(api: ApiEnv) -> None:
    job = protect(api, [make_subject(api)["id"]]).json()
    assert (job["phase"], job["eta_seconds"]) == (None, None)
    assert (_get(api, job["id"])["phase"], _get(api, job["id"])["eta_seconds"]) == (None, None)


def test_the_time_left_is_the_phases_elapsed_time_per_step_done_times_the_steps_left(api: ApiEnv) -> None:
    job_id = protect(api, [make_subject(api)["id"]]).json()["id"]
    # resumed at step 20 of 100, 30 s ago; 10 steps done since: 3 s a step, 70 steps left (210 s), plus 7 s for
    # every second the requests themselves take on a loaded machine
    start = time.monotonic()
    _set(api, job_id, **_running(30, status=JobStatus.RUNNING, phase="protecting", phase_start_step=20, step=30))
    _set(api, job_id, total_steps=100, progress=0.3)
    job = _get(api, job_id)
    listed = api.client.get("/v1/jobs", headers=api.auth(HOLDER)).json()["items"][0]
    latest = 7 * (30 + time.monotonic() - start) + 1
    assert (job["phase"], job["step"], job["total_steps"], job["progress"]) == ("protecting", 30, 100, 0.3)
    assert 209 <= job["eta_seconds"] <= latest
    assert listed["phase"] == "protecting" and 209 <= listed["eta_seconds"] <= latest


def test_a_verification_in_progress_has_its_own_phase_and_time_left(api: ApiEnv) -> None:
    job_id = protect(api, [make_subject(api)["id"]]).json()["id"]
    _set(api, job_id, **_running(20, status=JobStatus.SUCCEEDED, phase="verifying", step=40, total_steps=50))
    job = _get(api, job_id)
    assert (job["status"], job["phase"]) == ("succeeded", "verifying")
    assert job["eta_seconds"] == pytest.approx(5, abs=1)


@pytest.mark.parametrize(
    "columns",
    [
        {"step": 0},  # nothing done yet in the phase
        {"lease_owner": None, "lease_expires_at": None},  # the verification ended (or gave up) before its last step
        {"lease_expires_at": utcnow() - timedelta(seconds=1)},  # its worker died
        {"status": JobStatus.FAILED},  # a phase of a job that no longer runs
    ],
)
def test_no_time_left_is_estimated_when_it_cannot_be_told(api: ApiEnv, columns: dict[str, Any]) -> None:
    job_id = protect(api, [make_subject(api)["id"]]).json()["id"]
    _set(api, job_id, **_running(20, status=JobStatus.SUCCEEDED, phase="verifying", step=40, total_steps=50))
    _set(api, job_id, **columns)
    job = _get(api, job_id)
    assert job["phase"] == "verifying" and job["eta_seconds"] is None


def _reporting_verify(model_dir: Path, spec: ProtectionSpec, preset: str, out_dir: Path, progress) -> dict:
    for step in range(4):
        progress(step, 3)
    (out_dir / "report.json").write_text(json.dumps({"summary": {"psr": 1.0}}))
    return {"psr": 1.0}


def test_the_job_shows_its_verifications_progress_once_verified(make_env: Callable[..., ApiEnv]) -> None:
    api = make_env(
        "sqlite", lambda sf, storage: InProcessRunner(sf, storage, fake_protect, verify_fn=_reporting_verify)
    )
    job_id = protect(api, [make_subject(api)["id"]], verification="quick").json()["id"]
    assert api.runner.wait_idle(timeout=60)
    job = _get(api, job_id)
    assert (job["status"], job["phase"], job["step"], job["total_steps"], job["progress"]) == (
        "succeeded",
        "verifying",
        3,
        3,
        1.0,
    )
    assert job["eta_seconds"] is None  # done: its lease is released
    assert job["losses"] == {"bb": 0.25}  # the implantation's last losses
