"""API latency and throughput on loopback (issue #4, section 7).

Starts the API (embedded defaults in a temporary folder, or whatever PERSGUARD_* says) with uvicorn,
then measures:
  - subject registration with 5 small images: p50 / p99 latency (the upload is on loopback, so transfer is ~0);
  - protection submit (POST /v1/protections): p50 / p99 latency; target p99 <= 50 ms;
  - job status GET: requests per second with concurrent clients; target >= 1000 requests/s on 2 cores.
Every loop is bounded in count and time and talks to 127.0.0.1 only.

    .venv/bin/python benchmarks/api_latency.py [--submits 100] [--seconds 5] [--concurrency 16] [--workers 1]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _png(seed: int) -> bytes:
    """A small noisy PNG (random noise, so every call is a different picture)."""
    buffer = io.BytesIO()
    Image.effect_noise((64, 64), 40 + seed % 40).convert("RGB").save(buffer, "PNG")
    return buffer.getvalue()


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by process `pid` and its children that ended (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _admin_key(database_url: str) -> str:
    from common.db import make_engine, make_session_factory
    from common.keys import create_key, create_tenant
    from common.migrate import upgrade

    upgrade(database_url)
    engine = make_engine(database_url)
    with make_session_factory(engine)() as session:
        create_tenant(session, "bench")
        key = create_key(session, "bench", "rights_holder").secret
        session.commit()
    engine.dispose()
    return key


def _start_server(env: dict[str, str], port: int, workers: int) -> subprocess.Popen[bytes]:
    args = [
        sys.executable,
        "-m",
        "uvicorn",
        "api.main:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    process = subprocess.Popen(args, cwd=REPO, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the API did not start within 30 s")


def _measure_submits(client: httpx.Client, count: int) -> tuple[list[float], list[float], str]:
    register, submit, job_id = [], [], ""
    for i in range(count):
        files = [("images", (f"{j}.png", _png(i * 5 + j), "image/png")) for j in range(5)]
        start = time.perf_counter()
        subject = client.post("/v1/subjects", data={"name": f"s{i}", "class_noun": "dog"}, files=files)
        register.append(time.perf_counter() - start)
        subject.raise_for_status()
        start = time.perf_counter()
        job = client.post(
            "/v1/protections",
            json={"subjects": [{"subject_id": subject.json()["id"]}]},
            headers={"Idempotency-Key": f"bench-{i}"},
        )
        submit.append(time.perf_counter() - start)
        job.raise_for_status()
        job_id = job.json()["id"]
    return register, submit, job_id


async def _status_load(base: str, key: str, job_id: str, seconds: float, concurrency: int) -> tuple[int, int]:
    done = errors = 0
    stop = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}, limits=limits) as client:

        async def worker() -> None:
            nonlocal done, errors
            while time.monotonic() < stop:
                response = await client.get(f"/v1/jobs/{job_id}")
                done += 1
                errors += response.status_code != 200

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done, errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--submits", type=int, default=100, help="subjects registered and protections submitted")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of the status GET load")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent status GET clients")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="persguard-bench-") as tmp:
        env = {
            **os.environ,
            "PERSGUARD_DATABASE_URL": os.environ.get("PERSGUARD_DATABASE_URL", f"sqlite:///{tmp}/bench.sqlite3"),
            "PERSGUARD_STORAGE_DIR": os.environ.get("PERSGUARD_STORAGE_DIR", f"{tmp}/storage"),
            "PERSGUARD_WORKDIR": f"{tmp}/jobs",
        }
        key = _admin_key(env["PERSGUARD_DATABASE_URL"])
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        server = _start_server(env, port, args.workers)
        try:
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
                register, submit, job_id = _measure_submits(client, args.submits)
            cpu_before = _cpu_seconds(server.pid)
            done, errors = asyncio.run(_status_load(base, key, job_id, args.seconds, args.concurrency))
            server_cpu = _cpu_seconds(server.pid) - cpu_before
        finally:
            server.terminate()
            server.wait(timeout=30)

    def ms(samples: list[float], q: float) -> str:
        return f"{_percentile(samples, q) * 1000:.1f} ms"

    print(
        f"database: {env['PERSGUARD_DATABASE_URL'].split(':')[0]}, uvicorn workers: {args.workers}, "
        f"cpus: {os.cpu_count()}"
    )
    print(
        f"register subject (5 x 64x64 PNG), n={len(register)}: p50 {ms(register, 0.5)}, p99 {ms(register, 0.99)}, "
        f"mean {statistics.mean(register) * 1000:.1f} ms"
    )
    print(f"submit protection, n={len(submit)}: p50 {ms(submit, 0.5)}, p99 {ms(submit, 0.99)} (target p99 <= 50 ms)")
    print(
        f"status GET: {done / args.seconds:.0f} requests/s over {args.seconds:.0f} s with {args.concurrency} "
        f"clients, {errors} errors (target >= 1000 requests/s)"
    )
    if args.workers == 1 and done:
        per_request = server_cpu / done * 1000
        print(
            f"status GET server CPU: {per_request:.2f} ms per request, so one worker process on a free core "
            f"serves about {1000 / per_request:.0f} requests/s (load generator excluded)"
        )
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
