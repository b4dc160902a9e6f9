"""Jobs through real Celery worker processes: success with verification, two workers, cancel."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import urllib.request
from collections import Counter

from sqlalchemy import func, select

from common.db import make_engine, make_session_factory
from common.models import Checkpoint, VerificationReport


def _count(url: str, model, **where) -> int:
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as session:
            stmt = select(func.count()).select_from(model).filter_by(**where)
            return session.scalar(stmt) or 0
    finally:
        engine.dispose()


def test_job_runs_on_a_worker_publishes_a_downloadable_checkpoint_and_its_verification(deploy) -> None:
    d = deploy()
    d.start_worker("w1")
    job = d.submit(steps=6, every=3, verification="quick")
    done = d.wait_job(job["id"], {"succeeded", "failed"}, timeout=60)
    assert done["status"] == "succeeded", done["error"]
    assert (done["progress"], done["step"], done["total_steps"], done["attempts"]) == (1.0, 6, 6, 1)

    checkpoint_id = done["checkpoint_id"]
    d.wait_job(
        job["id"],
        {"succeeded"},
        timeout=30,
        verified=lambda _j: _count(d.settings.database_url, VerificationReport, checkpoint_id=checkpoint_id) == 1,
    )
    checkpoint = d.http.get(f"/v1/checkpoints/{checkpoint_id}", headers=d.auth("model_host")).json()
    assert checkpoint["verification"]["passed"] is True and checkpoint["verification"]["preset"] == "quick"
    redirect = d.http.get(checkpoint["links"]["download"], headers=d.auth("model_host"))
    assert redirect.status_code == 307
    with urllib.request.urlopen(redirect.headers["location"]) as response:
        archive = response.read()
    assert hashlib.sha256(archive).hexdigest() == checkpoint["sha256"]
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        assert json.loads(tar.extractfile("model_index.json").read())["resumed_from"] == 0

    reports = {k.rsplit("/", 1)[1] for k in d.objects(f"reports/{checkpoint_id}/")}
    assert reports == {"report.json", "report.html", "grid.png"}
    assert not d.objects("jobs/"), "the training state is removed once the job succeeded"


def test_two_workers_share_the_jobs_and_no_job_runs_twice(deploy) -> None:
    d = deploy()
    d.start_worker("w1")
    d.start_worker("w2")
    jobs = [d.submit(steps=8, every=4) for _ in range(6)]
    for job in jobs:
        done = d.wait_job(job["id"], {"succeeded", "failed"}, timeout=120)
        assert done["status"] == "succeeded", done["error"]
        assert done["attempts"] == 1
    starts = Counter(row[1] for row in d.runs() if row[2] == "start")
    assert len(starts) == 6 and set(starts.values()) == {1}, starts
    workers = {row[0] for row in d.runs() if row[2] == "start"}
    assert len(workers) == 2, f"jobs ran on {workers} only"
    assert _count(d.settings.database_url, Checkpoint) == 6


def test_cancel_mid_run_ends_the_job_cancelled_with_no_checkpoint_left(deploy) -> None:
    d = deploy()
    d.start_worker("w1")
    job = d.submit(steps=200, every=2)
    d.wait_job(job["id"], {"running"}, timeout=60, stepping=lambda j: j["step"] >= 4)
    response = d.http.post(f"/v1/jobs/{job['id']}/cancel", headers=d.auth())
    assert response.status_code == 200 and response.json()["cancel_requested"] is True
    done = d.wait_job(job["id"], {"cancelled", "succeeded", "failed"}, timeout=20)
    assert done["status"] == "cancelled" and done["checkpoint_id"] is None
    assert done["step"] < 200
    assert _count(d.settings.database_url, Checkpoint) == 0
    assert not d.objects("checkpoints/") and not d.objects("jobs/"), d.objects()
