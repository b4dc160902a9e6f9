"""A whole deployment per test: Postgres, SeaweedFS S3, Redis, the HTTP API (uvicorn in a thread) and real
Celery worker / beat processes started with `persguard worker` / `persguard beat`.

Timings are shrunk through the settings (leases of seconds, reconcile every second); the implantation is the
fake of `fakes.py` unless a test asks for the real core.
"""

from __future__ import annotations

import io
import os
import random
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import uvicorn
from PIL import Image

from common.db import make_engine, make_session_factory
from common.keys import create_key, create_tenant
from common.settings import Settings
from common.storage import S3Storage
from tests.worker.harness import PERSGUARD, REPO, Proc, Processes, free_port, wait_for

SHARED_REDIS = os.environ.get("PERSGUARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
FAST = {  # timings of a test deployment: leases of seconds, doorbells re-sent after seconds
    "PERSGUARD_JOB_LEASE_S": "3",
    "PERSGUARD_JOB_HEARTBEAT_S": "0.5",
    "PERSGUARD_JOB_REQUEUE_AFTER_S": "4",
    "PERSGUARD_RECONCILE_INTERVAL_S": "1",
    "PERSGUARD_PROGRESS_INTERVAL_S": "0.2",
    "PERSGUARD_CANCEL_CHECK_INTERVAL_S": "0.2",
    "PERSGUARD_STATE_UPLOAD_INTERVAL_S": "0",  # every state file: the fault tests wait for given steps in storage
    "PERSGUARD_RETRY_BACKOFF_S": "1",
    "PERSGUARD_RETRY_BACKOFF_MAX_S": "2",
    "PERSGUARD_TRANSIENT_RETRIES": "30",
    "PERSGUARD_TORCH_THREADS": "1",
}
FAKES = {
    "PERSGUARD_PROTECT_FN": "tests.worker.fakes:stepping_protect",
    "PERSGUARD_VERIFY_FN": "tests.worker.fakes:fake_verify",
}


def noise_png(seed: int, size: int = 32) -> bytes:
    rng = random.Random(seed)
    image = Image.frombytes("RGB", (size, size), bytes(rng.randrange(256) for _ in range(size * size * 3)))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class ApiServer:
    """The real app on a real port, in a thread of the test process."""

    def __init__(self, settings: Settings) -> None:
        from api.main import create_app

        self.port = free_port()
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_for(lambda: self.server.started, 30, "the API to start")
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@dataclass
class Deployment:
    tmp: Path
    procs: Processes
    env_base: dict[str, str]
    settings: Settings
    storage: S3Storage
    api: ApiServer
    http: httpx.Client
    keys: dict[str, str]
    workers: list[Proc] = field(default_factory=list)

    @property
    def runs_log(self) -> Path:
        return self.tmp / "runs.log"

    def env(self, **overrides: str) -> dict[str, str]:
        return {**self.env_base, **overrides}

    def start_worker(self, name: str = "w1", **overrides: str) -> Proc:
        env = self.env(PERSGUARD_WORKDIR=str(self.tmp / f"work-{name}"), **overrides)
        args = [str(PERSGUARD), "worker", "--name", f"{name}@%h", "--loglevel", "INFO"]
        proc = self.procs.start(name, args, env, ready="ready.")
        self.workers.append(proc)
        return proc

    def start_beat(self, **overrides: str) -> Proc:
        env = self.env(PERSGUARD_WORKDIR=str(self.tmp / "work-beat"), **overrides)
        return self.procs.start("beat", [str(PERSGUARD), "beat", "--loglevel", "INFO"], env, ready="ready.")

    def auth(self, role: str = "rights_holder") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    def subject(self, images: list[bytes] | None = None, name: str = "rex", class_noun: str = "dog") -> str:
        images = images or [noise_png(secrets.randbits(32)) for _ in range(3)]
        files = [("images", (f"{i}.png", data, "image/png")) for i, data in enumerate(images)]
        response = self.http.post(
            "/v1/subjects", headers=self.auth(), data={"name": name, "class_noun": class_noun}, files=files
        )
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def submit(self, steps: int = 10, every: int = 5, verification: str = "none", **body: Any) -> dict:
        """POST /v1/protections for a new subject (or `subject_id`), as an admin: `steps` is the request's step
        budget, and with `every` (the checkpoint interval) also the UNet's, which drive the fake implantation. Other
        keywords are request fields; `advanced` sections are set over these."""
        advanced = body.pop("advanced", {})
        training = {"steps": steps, "checkpoint_every": every, **advanced.get("training", {})}
        payload = {
            "subjects": [{"subject_id": body.pop("subject_id", None) or self.subject()}],
            "verification": verification,
            "steps": steps,
            "advanced": {**advanced, "training": training},
            **body,
        }
        response = self.http.post("/v1/protections", headers=self.auth("admin"), json=payload)
        assert response.status_code == 202, response.text
        return response.json()

    def job(self, job_id: str) -> dict:
        response = self.http.get(f"/v1/jobs/{job_id}", headers=self.auth())
        assert response.status_code == 200, response.text
        return response.json()

    def wait_job(self, job_id: str, statuses: set[str], timeout: float, **condition: Callable[[dict], bool]) -> dict:
        def check() -> dict | None:
            job = self.job(job_id)
            if job["status"] in statuses and all(test(job) for test in condition.values()):
                return job
            return None

        try:
            return wait_for(check, timeout, f"job {job_id} to reach {statuses}", interval=0.25)
        except AssertionError as exc:
            logs = "\n".join(f"--- {p.name}\n{p.output()[-3000:]}" for p in self.procs.started)
            raise AssertionError(f"{exc}; job is {self.job(job_id)}\n{logs}") from None

    def objects(self, prefix: str = "") -> set[str]:
        return {o.key for o in self.storage.list_objects(prefix)}

    def runs(self) -> list[list[str]]:
        """The fake implantation's log: [pid, subject, event, ...] per line."""
        if not self.runs_log.exists():
            return []
        return [line.split() for line in self.runs_log.read_text().splitlines()]


@pytest.fixture
def shared_redis() -> Iterator[str]:
    """Redis DB 13 of the shared server, emptied before and after the test."""
    client = redis.Redis.from_url(SHARED_REDIS)
    try:
        client.flushdb()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis is not reachable at {SHARED_REDIS} ({exc}); start redis-server")
    yield SHARED_REDIS
    client.flushdb()
    client.close()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(tmp_path)
    yield procs
    procs.stop_all()


@pytest.fixture
def deploy(
    request: pytest.FixtureRequest, tmp_path: Path, processes: Processes, postgres_database: str, s3_server
) -> Iterator[Callable[..., Deployment]]:
    """Builds the deployment: `deploy(broker_url=None, s3_endpoint=None)`; workers are started by the test."""
    made: list[Deployment] = []

    def make(broker_url: str | None = None, s3_endpoint: str | None = None, fakes: bool = True) -> Deployment:
        broker = broker_url or request.getfixturevalue("shared_redis")
        bucket = f"pgw-{secrets.token_hex(4)}"
        endpoint = s3_endpoint or s3_server.endpoint_url
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "OMP_NUM_THREADS": "1",
            "PERSGUARD_DATABASE_URL": postgres_database,
            "PERSGUARD_BROKER_URL": broker,
            "PERSGUARD_STORAGE_BACKEND": "s3",
            "PERSGUARD_S3_ENDPOINT_URL": endpoint,
            "PERSGUARD_S3_BUCKET": bucket,
            "PERSGUARD_S3_ACCESS_KEY": s3_server.access_key,
            "PERSGUARD_S3_SECRET_KEY": s3_server.secret_key,
            "FAKE_LOG": str(tmp_path / "runs.log"),
            **FAST,
            **(FAKES if fakes else {}),
        }
        settings = Settings(
            database_url=postgres_database,
            broker_url=broker,
            storage_backend="s3",
            s3_endpoint_url=endpoint,
            s3_bucket=bucket,
            s3_access_key=s3_server.access_key,
            s3_secret_key=s3_server.secret_key,
            workdir=tmp_path / "work-api",
            auth_cache_ttl_s=60,
        )
        storage = S3Storage(
            bucket=bucket,
            endpoint_url=s3_server.endpoint_url,
            access_key=s3_server.access_key,
            secret_key=s3_server.secret_key,
        )
        storage.ensure_bucket()
        keys = {}
        engine = make_engine(postgres_database)
        with make_session_factory(engine)() as session:
            tenant = f"acme-{secrets.token_hex(3)}"
            create_tenant(session, tenant)
            for role in ("rights_holder", "model_host", "admin"):
                keys[role] = create_key(session, tenant, role).secret
            session.commit()
        engine.dispose()
        api = ApiServer(settings)
        http = httpx.Client(base_url=api.url, timeout=30)
        deployment = Deployment(tmp_path, processes, env, settings, storage, api, http, keys)
        made.append(deployment)
        return deployment

    yield make
    processes.stop_all()  # workers first: nothing may touch the database while it is emptied
    for deployment in made:
        deployment.http.close()
        deployment.api.stop()
