"""Faults with real processes: a worker killed mid-job, Redis restarted with jobs queued, storage away a while."""

from __future__ import annotations

import io
import json
import os
import signal
import tarfile
import time
import urllib.request
import uuid
from urllib.parse import urlparse

from sqlalchemy import select

from common.db import make_engine, make_session_factory
from common.models import Checkpoint, ProtectionJob, SubjectImage
from tests.worker.conftest import FAST
from tests.worker.harness import OwnRedis, Proc, TcpProxy, wait_for


def _checkpoints(url: str) -> list[Checkpoint]:
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as session:
            return list(session.scalars(select(Checkpoint)))
    finally:
        engine.dispose()


def _image_keys(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as session:
            return set(session.scalars(select(SubjectImage.storage_key)))
    finally:
        engine.dispose()


def _model_index(d, checkpoint_id: str) -> dict:
    checkpoint = d.http.get(f"/v1/checkpoints/{checkpoint_id}", headers=d.auth("model_host")).json()
    location = d.http.get(checkpoint["links"]["download"], headers=d.auth("model_host")).headers["location"]
    with urllib.request.urlopen(location) as response, tarfile.open(fileobj=io.BytesIO(response.read())) as tar:
        return json.loads(tar.extractfile("model_index.json").read())


def test_worker_killed_mid_job_is_recovered_by_a_new_worker_resuming_from_saved_state(deploy) -> None:
    d = deploy()
    d.start_beat()
    first = d.start_worker("w1")
    job = d.submit(steps=24, every=4)
    engine = make_engine(d.settings.database_url)
    d.wait_job(job["id"], {"running"}, timeout=60, stepping=lambda j: j["step"] >= 10)
    wait_for(lambda: _state_step(engine, job["id"]) >= 8, 20, "training state of step 8 in storage")
    first.kill()  # SIGKILL to the worker and its pool process: no goodbye, the message stays unacknowledged

    d.start_worker("w2")
    done = d.wait_job(job["id"], {"succeeded", "failed", "cancelled"}, timeout=90)
    engine.dispose()
    assert done["status"] == "succeeded", done["error"]
    assert done["attempts"] == 2
    assert _model_index(d, done["checkpoint_id"])["resumed_from"] >= 8, "the second attempt resumed from the state"
    starts = [row for row in d.runs() if row[2] == "start"]
    assert [int(row[3]) for row in starts][0] == 0 and len(starts) == 2

    checkpoints = _checkpoints(d.settings.database_url)
    assert len(checkpoints) == 1
    expected = _image_keys(d.settings.database_url) | {checkpoints[0].storage_key}
    assert d.objects() == expected, "no orphaned objects: no second archive, no training state left"


def _job_row(engine, job_id: str) -> ProtectionJob:
    with make_session_factory(engine)() as session:
        return session.get_one(ProtectionJob, uuid.UUID(job_id))


def _holder(workers: list[Proc], lease_owner: str) -> Proc:
    """The worker whose pool process holds the lease (`host:pid:suffix`; the pool process is in its group)."""
    pid = int(lease_owner.split(":")[-2])
    return next(proc for proc in workers if os.getpgid(pid) == proc.popen.pid)


def test_a_dead_workers_job_is_taken_over_within_its_lease_whatever_the_reconcile_interval(deploy) -> None:
    lease_s = float(FAST["PERSGUARD_JOB_LEASE_S"])
    d = deploy()
    beat = d.start_beat(PERSGUARD_RECONCILE_INTERVAL_S="600")  # its period never comes in this test
    workers = [d.start_worker("w1"), d.start_worker("w2")]
    job = d.submit(steps=100, every=4)
    d.wait_job(job["id"], {"running"}, timeout=60, stepping=lambda j: j["step"] >= 3)
    engine = make_engine(d.settings.database_url)
    try:
        victim = _holder(workers, str(_job_row(engine, job["id"]).lease_owner))
        victim.kill()  # SIGKILL to the worker and its pool process: its heartbeats stop
        last_heartbeat = _job_row(engine, job["id"]).heartbeat_at
        d.wait_job(job["id"], {"running"}, timeout=30, taken_over=lambda j: j["attempts"] == 2)
        taken_at = _job_row(engine, job["id"]).started_at  # written by the second attempt's claim
    finally:
        engine.dispose()
    # Slack: beat's margin after the expiry, then the reconcile and implant messages and the claim, on a busy machine.
    taken_after_s = (taken_at - last_heartbeat).total_seconds()
    assert lease_s < taken_after_s <= lease_s + 2.0, f"taken over {taken_after_s:.2f} s after the last heartbeat"
    assert "worker lost (lease expired); re-queued" in beat.output()


def test_pool_process_killed_mid_job_is_recovered_by_the_same_worker(deploy) -> None:
    d = deploy()
    d.start_beat()
    worker = d.start_worker("w1")
    job = d.submit(steps=16, every=4)
    d.wait_job(job["id"], {"running"}, timeout=60, stepping=lambda j: j["step"] >= 5)
    child = int(d.runs()[0][0])  # the pool process running the job, as the OOM killer would pick it
    os.kill(child, signal.SIGKILL)

    done = d.wait_job(job["id"], {"succeeded", "failed", "cancelled"}, timeout=90)
    assert done["status"] == "succeeded", done["error"]
    assert worker.popen.poll() is None, "the worker itself lives on and forks a new pool process"
    starts = [row for row in d.runs() if row[2] == "start"]
    assert len(starts) == 2 and starts[1][0] != starts[0][0] and int(starts[1][3]) >= 4
    assert "WorkerLostError" in worker.output()
    assert len(_checkpoints(d.settings.database_url)) == 1


def _state_step(engine, job_id: str) -> int:
    from common.models import ProtectionJob

    with make_session_factory(engine)() as session:
        return session.scalar(select(ProtectionJob.state_step).where(ProtectionJob.id == job_id)) or 0


def test_redis_restart_with_jobs_queued_loses_no_job(deploy, processes) -> None:
    redis = OwnRedis(processes)
    d = deploy(broker_url=redis.url)
    d.start_beat()
    d.start_worker("w1")
    busy = d.submit(steps=20, every=5)
    d.wait_job(busy["id"], {"running"}, timeout=60)
    queued = [d.submit(steps=4, every=2) for _ in range(2)]  # waiting in Redis behind the busy job

    redis.kill()  # no persistence: every message in Redis is gone
    during = d.submit(steps=4, every=2)  # the broker is down: the row is written, the message is not
    assert during["status"] == "queued"
    time.sleep(1)
    redis.start()

    for job in [busy, *queued, during]:
        done = d.wait_job(job["id"], {"succeeded", "failed", "cancelled"}, timeout=120)
        assert done["status"] == "succeeded", done["error"]
    starts = [row[1] for row in d.runs() if row[2] == "start"]
    assert len(starts) == 4 and len(set(starts)) == 4, f"every job ran exactly once: {starts}"
    assert len(_checkpoints(d.settings.database_url)) == 4


def test_storage_unavailable_for_a_while_is_retried_until_the_job_succeeds(deploy, s3_server) -> None:
    proxy = TcpProxy(urlparse(s3_server.endpoint_url).port)
    try:
        d = deploy(s3_endpoint=f"http://127.0.0.1:{proxy.port}")
        d.start_worker("w1")
        job = d.submit(steps=10, every=5)
        d.wait_job(job["id"], {"running"}, timeout=60, stepping=lambda j: j["step"] >= 3)
        proxy.down()
        retrying = d.wait_job(job["id"], {"queued", "running"}, timeout=30, retrying=lambda j: bool(j["error"]))
        assert retrying["error"] == "retrying after a transient error: storage is unavailable", retrying["error"]
        time.sleep(4)  # a few more failed retries
        assert d.job(job["id"])["status"] in ("queued", "running")
        proxy.up()
        done = d.wait_job(job["id"], {"succeeded", "failed", "cancelled"}, timeout=60)
        assert done["status"] == "succeeded", done["error"]
        assert done["attempts"] >= 2 and done["error"] is None
        assert len(_checkpoints(d.settings.database_url)) == 1
        starts = [row for row in d.runs() if row[2] == "start"]
        assert len(starts) == 1, "the retries reused the finished training instead of training again"
    finally:
        proxy.down()
