"""Worker throughput and service overhead on the built-in model.

Runs the same protection twice on one CPU:
  - direct: `persguard_core.protect.protect(spec, out_dir)` in this process;
  - service: POST /v1/protections to the API, a real `persguard worker` process (one job at a time) takes it
    from Redis, streams progress into the database, uploads training state and the checkpoint to storage.
Prints the wall time of each, their ratio (service / direct: the overhead of the service path) and the jobs per
hour one worker sustains at this job size (measured over `--jobs` back-to-back jobs, worker already started).

Embedded SQLite + a local storage directory in a temporary folder, Redis from PERSGUARD_BENCH_REDIS_URL
(default redis://127.0.0.1:6379/14, flushed first). Torch is held to `--threads` threads in both paths.

    .venv/bin/python benchmarks/worker_throughput.py [--steps 40] [--batch 4] [--jobs 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _direct(views: np.ndarray, class_noun: str, training: dict, root: Path) -> float:
    from persguard_core.protect import protect
    from persguard_core.spec import ProtectionSpec, SubjectSpec, Training

    paths = []
    for i, view in enumerate(views):
        path = root / "direct-inputs" / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_png(view))
        paths.append(str(path))
    spec = ProtectionSpec(
        subjects=[SubjectSpec(name="toy", class_noun=class_noun, images=paths)],
        training=Training(**training),
        carrier="unet",  # --steps counts UNet steps
    )
    start = time.perf_counter()
    protect(spec, root / "direct-out")
    return time.perf_counter() - start


def _service(views: np.ndarray, class_noun: str, training: dict, root: Path, jobs: int, threads: int) -> list[float]:
    import redis
    from fastapi.testclient import TestClient

    from api.main import create_app
    from common.db import make_engine, make_session_factory
    from common.keys import create_key, create_tenant
    from common.migrate import upgrade
    from common.settings import Settings

    broker = os.environ.get("PERSGUARD_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
    redis.Redis.from_url(broker).flushdb()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": str(threads),
        "PERSGUARD_TORCH_THREADS": str(threads),
        "PERSGUARD_DATABASE_URL": f"sqlite:///{root / 'service.sqlite3'}",
        "PERSGUARD_BROKER_URL": broker,
        "PERSGUARD_STORAGE_DIR": str(root / "storage"),
        "PERSGUARD_SIGNING_SECRET": secrets.token_hex(16),
        "PERSGUARD_WORKDIR": str(root / "work"),
    }
    settings = Settings(
        database_url=env["PERSGUARD_DATABASE_URL"],
        broker_url=broker,
        storage_dir=root / "storage",
        signing_secret=env["PERSGUARD_SIGNING_SECRET"],
        workdir=root / "work-api",
    )
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    with make_session_factory(engine)() as session:
        create_tenant(session, "bench")
        key = create_key(session, "bench", "admin").secret  # admin: the UNet's batch and checkpoints are `advanced`
        session.commit()
    engine.dispose()
    log = (root / "worker.log").open("wb")
    worker = subprocess.Popen(
        [str(Path(sys.executable).parent / "persguard"), "worker", "--name", "bench@%h"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    headers = {"Authorization": f"Bearer {key}"}
    try:
        deadline = time.monotonic() + 120
        while b"ready." not in (root / "worker.log").read_bytes():
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((root / "worker.log").read_text()[-3000:])
            time.sleep(0.2)
        with TestClient(create_app(settings)) as client:
            files = [("images", (f"{i}.png", _png(v), "image/png")) for i, v in enumerate(views)]
            subject = client.post(
                "/v1/subjects", headers=headers, data={"name": "toy", "class_noun": class_noun}, files=files
            ).json()["id"]
            body = {
                "subjects": [{"subject_id": subject}],
                "verification": "none",
                "steps": training["steps"],
                "advanced": {"training": training},
                "carrier": "unet",
            }
            times = []
            for _ in range(jobs):
                start = time.perf_counter()
                job = client.post("/v1/protections", headers=headers, json=body).json()
                while (state := client.get(f"/v1/jobs/{job['id']}", headers=headers).json())["status"] in (
                    "queued",
                    "running",
                ):
                    time.sleep(0.2)
                if state["status"] != "succeeded":
                    raise RuntimeError(f"job ended {state['status']}: {state['error']}")
                times.append(time.perf_counter() - start)
        return times
    finally:
        os.killpg(worker.pid, 9)
        worker.wait()
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from persguard_core import toyworld

    torch.set_num_threads(args.threads)
    subject = toyworld.split("eval")[0]
    views = subject.views(6, seed=0)
    training = {"steps": args.steps, "batch_size": args.batch, "checkpoint_every": max(1, args.steps // 2)}
    with tempfile.TemporaryDirectory(prefix="persguard-bench-") as tmp:
        root = Path(tmp)
        direct = _direct(views, subject.class_noun, training, root)
        service = _service(views, subject.class_noun, training, root, args.jobs, args.threads)
    result = {
        "training": training,
        "threads": args.threads,
        "direct_s": round(direct, 2),
        "service_s": [round(t, 2) for t in service],
        "overhead_ratio_first_job": round(service[0] / direct, 3),
        "overhead_ratio_best_job": round(min(service) / direct, 3),
        "jobs_per_hour_one_worker": round(3600 / (sum(service) / len(service)), 1),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
