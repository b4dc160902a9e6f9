"""Fault figures of docs/RELIABILITY.md: real jobs through the whole stack while a piece of it fails.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/faults.py [--scenarios worker_kill,...] [--steps 60] [--set K=V]

The stack, all real processes on this machine: a fresh Postgres database (127.0.0.1:5432), a private redis-server,
SeaweedFS (`weed mini`) behind a TCP proxy that can cut it off, `persguard serve` (Celery runner), two
`persguard worker`s and `persguard beat`. Jobs run the real core on the built-in model, with the smallest settings
that still train (the `fast` profile, `--steps` encoder steps, batch 8, training state every 10 steps, no
verification). Timings are shrunk through the settings (FAST below, `--set` overrides one): a lease of 10 s renewed
every 2 s, the reconciler every 2 s (and at each lease's expiry), a lost doorbell rung again after 10 s.

Scenarios (each waits for every job it submitted, then counts):
- baseline: one job, no fault.
- worker_kill: SIGKILL to the worker process group running a job, once its training state is in storage.
- redis_restart: Redis (no persistence: every message is lost) killed while two jobs run and one waits, down 5 s, a
  job submitted meanwhile.
- s3_outage: S3 cut off for 30 s from the moment the job's checkpoint archive is half uploaded; subject uploads are
  attempted meanwhile.
- api_restart: SIGKILL to the API while clients upload subjects and submit protections (each with an
  Idempotency-Key), then a restart; the clients retry what failed.

Per scenario: jobs lost (accepted, not succeeded at the end), checkpoints per job (rows, and objects under
`checkpoints/<id>/`), training state left in storage, orphaned objects, attempts, and times to recover.
Writes a JSON summary to --out and prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from PIL import Image
from sqlalchemy import func, select

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common.db import make_engine, make_session_factory  # noqa: E402
from common.keys import create_key, create_tenant  # noqa: E402
from common.migrate import upgrade  # noqa: E402
from common.models import Checkpoint, ProtectionJob, Subject, SubjectImage  # noqa: E402
from common.storage import S3Storage  # noqa: E402
from tests.seaweedfs import wait_for_s3, weed_mini  # noqa: E402
from tests.worker.harness import PERSGUARD, OwnRedis, Proc, Processes, TcpProxy, free_port, wait_for  # noqa: E402
from worker.sweep import sweep_storage  # noqa: E402

POSTGRES_ADMIN_URL = os.environ.get("PERSGUARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
FAST = {
    "PERSGUARD_JOB_LEASE_S": "10",
    "PERSGUARD_JOB_HEARTBEAT_S": "2",
    "PERSGUARD_JOB_REQUEUE_AFTER_S": "10",
    "PERSGUARD_RECONCILE_INTERVAL_S": "2",
    "PERSGUARD_PROGRESS_INTERVAL_S": "0.5",
    "PERSGUARD_CANCEL_CHECK_INTERVAL_S": "0.5",
    "PERSGUARD_STATE_UPLOAD_INTERVAL_S": "0",
    "PERSGUARD_RETRY_BACKOFF_S": "1",
    "PERSGUARD_RETRY_BACKOFF_MAX_S": "4",
    "PERSGUARD_TRANSIENT_RETRIES": "30",
    "PERSGUARD_TORCH_THREADS": "1",
}
S3_OUTAGE_S = 30.0
DONE = {"succeeded", "failed", "cancelled"}


def now() -> float:
    return time.monotonic()


def noise_png(seed: int, size: int = 64) -> bytes:
    rng = random.Random(seed)
    image = Image.frombytes("RGB", (size, size), rng.randbytes(size * size * 3))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class UploadCutter(TcpProxy):
    """The S3 proxy, which can also cut S3 off in the middle of an upload: once `arm(prefix)` was called, the first
    PUT of a key under `prefix` takes the proxy down after `after_bytes` of its body went through."""

    def __init__(self, target_port: int) -> None:
        self.armed: str | None = None
        self.after_bytes = 1 << 20
        self.cut_at: float | None = None
        self.cut_request = ""
        super().__init__(target_port)

    def arm(self, prefix: str) -> None:
        self.armed, self.cut_at = prefix, None

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:  # type: ignore[override]
        counting, seen = False, 0
        try:
            while data := source.recv(65536):
                if self.armed and data[:4] == b"PUT ":
                    line = data.split(b"\r\n", 1)[0].decode("latin-1")
                    counting, seen = f"/{self.armed}" in line, 0
                    if counting:
                        self.cut_request = line
                if counting:
                    seen += len(data)
                    if seen > self.after_bytes and self.armed:
                        self.armed, self.cut_at = None, now()
                        threading.Thread(target=self.down, daemon=True).start()
                        return
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


@dataclass
class Stack:
    root: Path
    steps: int
    settings: dict[str, str] = field(default_factory=lambda: dict(FAST))
    procs: Processes = field(init=False)
    database_url: str = ""
    db_name: str = ""
    env: dict[str, str] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    workers: dict[str, Proc] = field(default_factory=dict)
    api: Proc | None = None
    api_url: str = ""
    api_port: int = 0

    def __post_init__(self) -> None:
        self.procs = Processes(self.root)

    # --- set-up -----------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._postgres()
        self._seaweedfs()
        self.redis = OwnRedis(self.procs)
        bucket = f"faults-{secrets.token_hex(3)}"
        self.storage = S3Storage(
            bucket=bucket, endpoint_url=self.s3_url, access_key=self.s3_access, secret_key=self.s3_secret
        )
        self.storage.ensure_bucket()
        self.engine = make_engine(self.database_url)
        self.sessions = make_session_factory(self.engine)
        with self.sessions() as session:
            create_tenant(session, "faults")
            for role in ("rights_holder", "admin"):
                self.keys[role] = create_key(session, "faults", role).secret
            session.commit()
        self.env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "OMP_NUM_THREADS": "1",
            "PERSGUARD_DATABASE_URL": self.database_url,
            "PERSGUARD_BROKER_URL": self.redis.url,
            "PERSGUARD_STORAGE_BACKEND": "s3",
            "PERSGUARD_S3_ENDPOINT_URL": f"http://127.0.0.1:{self.proxy.port}",
            "PERSGUARD_S3_BUCKET": bucket,
            "PERSGUARD_S3_ACCESS_KEY": self.s3_access,
            "PERSGUARD_S3_SECRET_KEY": self.s3_secret,
            "PERSGUARD_SIGNING_SECRET": "faults-signing-secret",
            **self.settings,
        }
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.http = httpx.Client(base_url=self.api_url, timeout=60)
        self.start_api()
        self.procs.start("beat", [str(PERSGUARD), "beat", "--loglevel", "INFO"], self._env("beat"), ready="ready.")
        for name in ("w1", "w2"):
            self.start_worker(name)

    def _postgres(self) -> None:
        self.db_name = f"persguard_faults_{secrets.token_hex(4)}"
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{self.db_name}"')
        base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
        self.database_url = f"{base}/{self.db_name}"
        upgrade(self.database_url)

    def _seaweedfs(self) -> None:
        root = self.root / "seaweedfs"
        root.mkdir()
        self.s3_access, self.s3_secret = "PGFAULT" + secrets.token_hex(6).upper(), secrets.token_urlsafe(24)
        identity = {
            "name": "persguard-faults",
            "credentials": [{"accessKey": self.s3_access, "secretKey": self.s3_secret}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        (root / "s3.json").write_text(json.dumps({"identities": [identity]}))
        args, ports = weed_mini(root)
        self.weed = self.procs.start("seaweedfs", args, {**os.environ, "GOMAXPROCS": "1"})
        self.s3_url = f"http://127.0.0.1:{ports['s3.port']}"
        wait_for_s3(self.s3_url, self.weed.popen, self.weed.log)
        self.proxy = UploadCutter(ports["s3.port"])

    def _env(self, name: str) -> dict[str, str]:
        return {**self.env, "PERSGUARD_WORKDIR": str(self.root / f"work-{name}")}

    def start_api(self) -> float:
        """Start `persguard serve`; returns when it answers /readyz (the seconds that took)."""
        started = now()
        args = [str(PERSGUARD), "serve", "--port", str(self.api_port), "--no-migrate"]
        self.api = self.procs.start(f"api-{len(self.procs.started)}", args, self._env("api"))
        wait_for(self._ready, 120, "the API to be ready", interval=0.1)
        return now() - started

    def _ready(self) -> bool:
        assert self.api is not None
        if self.api.popen.poll() is not None:
            raise RuntimeError(f"the API exited:\n{self.api.output()[-3000:]}")
        try:
            return self.http.get("/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def start_worker(self, name: str) -> Proc:
        args = [str(PERSGUARD), "worker", "--name", f"{name}@%h", "--loglevel", "INFO"]
        self.workers[name] = self.procs.start(name, args, self._env(name), ready="ready.", timeout=180)
        return self.workers[name]

    def close(self) -> None:
        self.procs.stop_all()
        self.proxy.down()
        self.engine.dispose()
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')

    # --- the API as a client uses it --------------------------------------------------------------------------
    def auth(self, role: str = "rights_holder") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    def subject(self, seed: int | None = None) -> str:
        seed = secrets.randbits(32) if seed is None else seed
        files = [("images", (f"{i}.png", noise_png(seed * 10 + i), "image/png")) for i in range(3)]
        response = self.http.post(
            "/v1/subjects", headers=self.auth(), data={"name": "s", "class_noun": "dog"}, files=files
        )
        response.raise_for_status()
        return response.json()["id"]

    def body(self, subject_id: str) -> dict[str, Any]:
        return {
            "subjects": [{"subject_id": subject_id}],
            "profile": "fast",
            "steps": self.steps,
            "verification": "none",
            "advanced": {"training": {"checkpoint_every": 10}, "encoder": {"batch_size": 8}},
        }

    def submit(self, subject_id: str | None = None, key: str | None = None) -> str:
        headers = {**self.auth("admin"), "Idempotency-Key": key or uuid.uuid4().hex}
        response = self.http.post("/v1/protections", headers=headers, json=self.body(subject_id or self.subject()))
        assert response.status_code == 202, response.text
        return response.json()["id"]

    # --- the database and the bucket, read directly -----------------------------------------------------------
    def job(self, job_id: str) -> ProtectionJob:
        with self.sessions() as session:
            job = session.get(ProtectionJob, uuid.UUID(job_id))
            assert job is not None
            session.expunge(job)
            return job

    def wait_done(self, job_ids: list[str], timeout: float) -> dict[str, float]:
        """Wait until every job ended; returns each job's end time (monotonic)."""
        ended: dict[str, float] = {}

        def all_done() -> bool:
            for job_id in job_ids:
                if job_id not in ended and self.job(job_id).status in DONE:
                    ended[job_id] = now()
            return len(ended) == len(job_ids)

        wait_for(all_done, timeout, f"jobs {job_ids} to end", interval=0.25)
        return ended

    def objects(self, prefix: str = "") -> list[str]:
        return [o.key for o in self.storage.list_objects(prefix)]

    def unfinished_uploads(self) -> int:
        listing = self.storage.client.list_multipart_uploads(Bucket=self.storage.bucket)
        return len(listing.get("Uploads", []))

    def orphans(self) -> list[str]:
        """Objects no row refers to: subject images without a row, checkpoint files without a checkpoint row,
        training state of jobs that are not running, queued or failed."""
        with self.sessions() as session:
            images = set(session.scalars(select(SubjectImage.storage_key)))
            checkpoints = {str(c) for c in session.scalars(select(Checkpoint.id))}
            live = {
                str(j)
                for j in session.scalars(
                    select(ProtectionJob.id).where(ProtectionJob.status.in_(("queued", "running", "failed")))
                )
            }
        found = []
        for key in self.objects():
            parts = key.split("/")
            if (
                (parts[0] == "subjects" and key not in images)
                or (parts[0] == "checkpoints" and parts[1] not in checkpoints)
                or (parts[0] == "jobs" and parts[1] not in live)
            ):
                found.append(key)
        return found

    def worker_log(self) -> str:
        return "\n".join(proc.output() for proc in self.procs.started if proc.name.startswith("w"))

    def trainings(self, job_id: str) -> int:
        """How many times the core finished training this job (its log names the job's work directory)."""
        return sum(1 for line in self.worker_log().splitlines() if "protected" in line and f"job-{job_id}-" in line)

    def job_counts(self, job_ids: list[str]) -> dict[str, Any]:
        """Lost jobs, checkpoints per job (rows, objects) and attempts."""
        rows, objects, attempts, lost, state_left = [], [], [], [], 0
        with self.sessions() as session:
            for job_id in job_ids:
                job = session.get(ProtectionJob, uuid.UUID(job_id))
                assert job is not None
                if job.status != "succeeded":
                    lost.append(f"{job_id}: {job.status} {job.error}")
                attempts.append(job.attempts)
                checkpoints = list(session.scalars(select(Checkpoint).where(Checkpoint.job_id == job.id)))
                rows.append(len(checkpoints))
                objects.append(sum(len(self.objects(f"checkpoints/{c.id}/")) for c in checkpoints))
                state_left += len(self.objects(f"jobs/{job_id}/"))
        return {
            "jobs": len(job_ids),
            "lost": len(lost),
            "lost_detail": lost,
            "checkpoint_rows_per_job": sorted(set(rows)),
            "checkpoint_objects_per_job": sorted(set(objects)),
            "training_state_objects_left": state_left,
            "attempts": attempts,
            "trainings_finished": [self.trainings(job_id) for job_id in job_ids],
        }


# --- scenarios -----------------------------------------------------------------------------------------------------
def baseline(stack: Stack) -> dict[str, Any]:
    subject = stack.subject()
    started = now()
    job_id = stack.submit(subject)
    ended = stack.wait_done([job_id], 600)
    return {**stack.job_counts([job_id]), "job_s": round(ended[job_id] - started, 1)}


def worker_kill(stack: Stack) -> dict[str, Any]:
    job_id = stack.submit()
    wait_for(lambda: stack.job(job_id).state_step >= 20, 600, "a stored training state of step 20", interval=0.2)
    before = stack.job(job_id)
    owner_pid = int(str(before.lease_owner).split(":")[-2])
    victim = next(name for name, proc in stack.workers.items() if _in_group(owner_pid, proc.popen.pid))
    killed_at = now()
    stack.workers[victim].kill()  # SIGKILL to the worker and its pool process
    stack.workers.pop(victim)
    last_heartbeat = _aware(stack.job(job_id).heartbeat_at)  # the dead worker's last: it writes no more

    def reclaimed() -> bool:
        job = stack.job(job_id)
        return job.status == "succeeded" or (
            job.lease_owner not in (None, before.lease_owner) and job.status == "running"
        )

    wait_for(reclaimed, 300, "another worker to take the job", interval=0.1)
    reclaimed_at = now()
    taken_at = _aware(stack.job(job_id).started_at)  # written by the second attempt's claim
    ended = stack.wait_done([job_id], 600)
    stack.start_worker(victim + "b")
    after = stack.job(job_id)
    return {
        **stack.job_counts([job_id]),
        "resumed_at": re.findall(r"resumed the encoder carrier at step (\d+)", stack.worker_log()),
        "state_step_at_kill": before.state_step,
        "step_at_kill": before.step,
        "total_steps": after.total_steps,
        "recover_s": round(reclaimed_at - killed_at, 1),
        "heartbeat_to_reclaim_s": round((taken_at - last_heartbeat).total_seconds(), 2),
        "kill_to_done_s": round(ended[job_id] - killed_at, 1),
        "bound_s": _takeover_bound_s(stack.settings),
    }


def _takeover_bound_s(settings: dict[str, str]) -> float:
    """How long after its last heartbeat a dead worker's job is re-queued at the latest (then delivered): the lease,
    plus the reconciler's period unless beat wakes at each lease's expiry (common/jobs/schedule.py)."""
    lease = float(settings["PERSGUARD_JOB_LEASE_S"])
    if settings.get("PERSGUARD_RECONCILE_ON_LEASE_EXPIRY", "true").lower() in ("0", "false", "no", "off"):
        return lease + float(settings["PERSGUARD_RECONCILE_INTERVAL_S"])
    return lease


def _in_group(pid: int, group: int) -> bool:
    try:
        return os.getpgid(pid) == group
    except ProcessLookupError:
        return False


def redis_restart(stack: Stack) -> dict[str, Any]:
    subjects = [stack.subject() for _ in range(4)]
    jobs = [stack.submit(s) for s in subjects[:3]]  # two workers: two run, one waits in Redis
    wait_for(lambda: sum(stack.job(j).status == "running" for j in jobs) == 2, 600, "two running jobs", interval=0.2)
    running = [j for j in jobs if stack.job(j).status == "running"]
    queued = next(j for j in jobs if j not in running)
    steps_before = {j: stack.job(j).step for j in running}
    stack.redis.kill()
    down_at = now()
    during = stack.submit(subjects[3])  # the broker is down: the row is written, the doorbell is not
    time.sleep(max(0.0, 5 - (now() - down_at)))
    stack.redis.start()
    up_at, up_wall = now(), datetime.now(UTC)
    waiting = [queued, during]

    def rerung() -> bool:
        return all(_aware(stack.job(j).enqueued_at) > up_wall or stack.job(j).status != "queued" for j in waiting)

    wait_for(rerung, 300, "the lost doorbells to be rung again", interval=0.1)
    rerung_at = now()
    all_jobs = [*jobs, during]
    ended = stack.wait_done(all_jobs, 1200)
    return {
        **stack.job_counts(all_jobs),
        "redis_down_s": round(up_at - down_at, 1),
        "running_jobs_went_on": all(stack.job(j).step > steps_before[j] for j in running),
        "recover_s": round(rerung_at - up_at, 1),
        "up_to_all_done_s": round(max(ended.values()) - up_at, 1),
        "bound_s": float(stack.settings["PERSGUARD_JOB_REQUEUE_AFTER_S"])
        + float(stack.settings["PERSGUARD_RECONCILE_INTERVAL_S"]),
    }


def _aware(moment: datetime | None) -> datetime:
    if moment is None:
        return datetime.min.replace(tzinfo=UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def s3_outage(stack: Stack) -> dict[str, Any]:
    job_id = stack.submit()
    wait_for(lambda: stack.job(job_id).status == "running", 300, "the job to run", interval=0.2)
    stack.proxy.arm(f"{stack.storage.bucket}/checkpoints/")
    wait_for(lambda: stack.proxy.cut_at is not None, 900, "the checkpoint upload to start", interval=0.05)
    cut_at = stack.proxy.cut_at or now()
    refused = []
    while now() - cut_at < S3_OUTAGE_S:
        files = [("images", (f"{i}.png", noise_png(secrets.randbits(32) + i), "image/png")) for i in range(3)]
        response = stack.http.post(
            "/v1/subjects", headers=stack.auth(), data={"name": "s", "class_noun": "dog"}, files=files
        )
        refused.append(response.status_code)
        time.sleep(2)
    during = stack.job(job_id)
    stack.proxy.up()
    up_at = now()
    ended = stack.wait_done([job_id], 600)
    return {
        **stack.job_counts([job_id]),
        "cut_during": stack.proxy.cut_request.split(" ")[1].split("?")[0],
        "job_during_outage": f"{during.status}: {during.error}",
        "subject_uploads_during_outage": {str(code): refused.count(code) for code in sorted(set(refused))},
        "unfinished_multipart_uploads": stack.unfinished_uploads(),
        "unfinished_after_one_purge": _purged(stack).unfinished_uploads(),
        "recover_s": round(ended[job_id] - up_at, 1),
        "outage_s": round(up_at - cut_at, 1),
    }


def _purged(stack: Stack) -> Stack:
    """One purge pass with no grace (nothing is uploading now), as beat runs it every PURGE_INTERVAL_S."""
    sweep_storage(stack.sessions, stack.storage, grace_s=0, failed_retention_s=7 * 24 * 3600)
    return stack


@dataclass
class Client:
    """Uploads subjects and submits protections in a loop, retrying what fails (as a client would)."""

    stack: Stack
    protections: int
    stop: threading.Event = field(default_factory=threading.Event)
    subjects: list[str] = field(default_factory=list)
    jobs: dict[str, str] = field(default_factory=dict)  # idempotency key -> job id
    failures: list[tuple[float, str]] = field(default_factory=list)
    successes: list[float] = field(default_factory=list)
    in_flight: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        http = httpx.Client(base_url=self.stack.api_url, timeout=60)
        n = 0
        while not self.stop.is_set():
            n += 1
            subject = self._retry(http, lambda n=n: self._upload(http, n))
            if subject is None:
                return
            self.subjects.append(subject)
            if len(self.jobs) < self.protections and n % 3 == 0:
                key = uuid.uuid4().hex
                job = self._retry(http, lambda k=key, s=subject: self._protect(http, s, k))
                if job is None:
                    return
                self.jobs[key] = job
        http.close()

    def _retry(self, http: httpx.Client, call: Callable[[], str]) -> str | None:
        while not self.stop.is_set():
            try:
                result = call()
                self.successes.append(now())
                return result
            except (httpx.HTTPError, AssertionError) as exc:
                self.failures.append((now(), type(exc).__name__))
                time.sleep(0.2)
        return None

    def _upload(self, http: httpx.Client, n: int) -> str:
        files = [("images", (f"{i}.png", noise_png(secrets.randbits(32) + i, 256), "image/png")) for i in range(3)]
        self.in_flight.set()
        try:
            response = http.post(
                "/v1/subjects", headers=self.stack.auth(), data={"name": f"c{n}", "class_noun": "dog"}, files=files
            )
        finally:
            self.in_flight.clear()
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def _protect(self, http: httpx.Client, subject: str, key: str) -> str:
        headers = {**self.stack.auth("admin"), "Idempotency-Key": key}
        response = http.post("/v1/protections", headers=headers, json=self.stack.body(subject))
        assert response.status_code == 202, response.text
        return response.json()["id"]


def api_restart(stack: Stack) -> dict[str, Any]:
    with stack.sessions() as session:
        subjects_before = session.scalar(select(func.count()).select_from(Subject)) or 0
    clients = [Client(stack, protections=2) for _ in range(2)]
    threads = [threading.Thread(target=c.run, daemon=True) for c in clients]
    for thread in threads:
        thread.start()
    wait_for(lambda: sum(len(c.jobs) for c in clients) >= 2, 120, "the first protections", interval=0.1)
    wait_for(lambda: any(c.in_flight.is_set() for c in clients), 60, "an upload in flight", interval=0.005)
    time.sleep(random.uniform(0.02, 0.1))
    assert stack.api is not None
    killed_at = now()
    stack.api.kill()
    ready_s = stack.start_api()
    wait_for(lambda: any(t > killed_at for c in clients for t in c.successes), 60, "a request to succeed again")
    first_success = min(t for c in clients for t in c.successes if t > killed_at)
    wait_for(lambda: sum(len(c.jobs) for c in clients) >= 4, 300, "all protections submitted", interval=0.2)
    for client in clients:
        client.stop.set()
    for thread in threads:
        thread.join(timeout=120)
    job_ids = [job for c in clients for job in c.jobs.values()]
    stack.wait_done(job_ids, 1200)
    acknowledged = {s for c in clients for s in c.subjects}
    with stack.sessions() as session:
        rows = set(map(str, session.scalars(select(Subject.id))))
        created = (session.scalar(select(func.count()).select_from(Subject)) or 0) - subjects_before
        jobs_per_key = [
            session.scalar(select(func.count()).select_from(ProtectionJob).where(ProtectionJob.idempotency_key == k))
            for c in clients
            for k in c.jobs
        ]
    orphans = stack.orphans()
    swept = sweep_storage(stack.sessions, stack.storage, grace_s=0, failed_retention_s=7 * 24 * 3600)
    return {
        **stack.job_counts(job_ids),
        "subject_uploads_acknowledged": len(acknowledged),
        "acknowledged_subjects_missing": len(acknowledged - rows),
        "subjects_created": created,
        "jobs_per_idempotency_key": sorted(set(jobs_per_key)),
        "client_errors": sorted({kind for c in clients for _, kind in c.failures}),
        "client_failed_requests": sum(len(c.failures) for c in clients),
        "orphans_after_restart": len(orphans),
        "orphans_left_after_one_purge": len(stack.orphans()),
        "purge_deleted": len(swept.deleted),
        "api_ready_s": round(ready_s, 1),
        "recover_s": round(first_success - killed_at, 1),
    }


SCENARIOS: dict[str, Callable[[Stack], dict[str, Any]]] = {
    "baseline": baseline,
    "worker_kill": worker_kill,
    "redis_restart": redis_restart,
    "s3_outage": s3_outage,
    "api_restart": api_restart,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--steps", type=int, default=60, help="encoder steps per job (the request's `steps`)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "logs" / "faults.json")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs of every process)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PERSGUARD_NAME=VALUE",
        help="a setting over FAST's (repeatable), e.g. PERSGUARD_RECONCILE_INTERVAL_S=60",
    )
    args = parser.parse_args()
    settings = {**FAST, **dict(item.split("=", 1) for item in args.set)}
    root = Path(subprocess.check_output(["mktemp", "-d", "/tmp/persguard-faults.XXXXXX"], text=True).strip())
    print(f"work directory {root}", flush=True)
    stack = Stack(root, args.steps, settings)
    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["benchmarks/faults.py", *sys.argv[1:]]),
        "steps": args.steps,
        "settings": settings,
        "scenarios": {},
    }
    try:
        stack.start()
        for name in args.scenarios.split(","):
            print(f"--- {name}", flush=True)
            started = now()
            try:
                result = SCENARIOS[name](stack)
            except Exception as exc:  # report and go on with the next scenario
                result = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
            result["scenario_s"] = round(now() - started, 1)
            results["scenarios"][name] = result
            print(json.dumps(result, indent=1), flush=True)
        results["orphans_at_end"] = stack.orphans()
        results["unfinished_uploads_at_end"] = stack.unfinished_uploads()
    finally:
        stack.close()
        if not args.keep:
            subprocess.run(["rm", "-rf", str(root)], check=False)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    sys.exit(main())
