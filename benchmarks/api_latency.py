"""API latency and throughput on loopback.

Starts the API (embedded defaults in a temporary folder, or whatever PERSGUARD_DATABASE_URL and
PERSGUARD_STORAGE_DIR say) with uvicorn, then measures:
  - subject registration with 5 small images: p50 / p99 latency (the upload is on loopback, so transfer is ~0);
  - protection submit (POST /v1/protections): p50 / p99 latency and server CPU per request; target p99 <= 50 ms;
  - job status GET: requests per second from concurrent keep-alive connections (a bare HTTP/1.1 client, so that
    the load generator does not eat the CPUs it shares with the server) and server CPU per request; target >= 1000
    requests/s on 2 cores.
Every loop is bounded in count and time and talks to 127.0.0.1 only.

Jobs are queued, never run: the server's broker is `--broker-url` (default redis://127.0.0.1:6379/12;
PERSGUARD_BROKER_URL is ignored), so submitted jobs wait in that Redis database, with no worker listening, instead
of training in the API process (the in-process runner would start a CPU-heavy job and skew every figure). The
benchmark refuses a database that is not empty, and empties it (FLUSHDB) when it ends. Needs a reachable Redis.

Server CPU is user + system time of the uvicorn processes (workers included) over a phase, divided by its
requests; the load generator is excluded (its own CPU per request is printed beside it). On a shared machine it is
the figure to compare between runs.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/api_latency.py [--submits 100] [--seconds 5] [--concurrency 16]
        [--workers 1] [--http auto|h11|httptools] [--loop auto|asyncio|uvloop] [--broker-url redis://127.0.0.1:6379/12]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import redis
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


DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/12"


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by process `pid`, its live descendants (uvicorn's worker processes)
    and the children that ended (Linux /proc)."""
    proc = Path(f"/proc/{pid}")
    fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
    total = sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    for children in proc.glob("task/*/children"):
        for child in children.read_text().split():
            with suppress(FileNotFoundError):  # it ended between the listing and the read
                total += _cpu_seconds(int(child))
    return total


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@contextmanager
def _private_broker(url: str) -> Iterator[None]:
    """Lends the Redis database at `url` to the run: it must be empty at the start, and is emptied at the end."""
    client = redis.Redis.from_url(url, socket_connect_timeout=5)
    if keys := client.dbsize():
        client.close()
        raise SystemExit(f"the broker database {url} holds {keys} keys; point --broker-url at an empty one")
    try:
        yield
    finally:
        client.flushdb()
        client.close()


def _bench_key(database_url: str) -> str:
    """A rights_holder key of a new tenant (a fresh name, so a persistent database can be reused)."""
    from common.db import make_engine, make_session_factory
    from common.keys import create_key, create_tenant
    from common.migrate import upgrade

    upgrade(database_url)
    engine = make_engine(database_url)
    with make_session_factory(engine)() as session:
        tenant = f"bench-{secrets.token_hex(4)}"
        create_tenant(session, tenant)
        key = create_key(session, tenant, "rights_holder").secret
        session.commit()
    engine.dispose()
    return key


def _start_server(env: dict[str, str], port: int, args: argparse.Namespace) -> subprocess.Popen[bytes]:
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
        str(args.workers),
        "--http",
        args.http,
        "--loop",
        args.loop,
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


def _register_subjects(client: httpx.Client, count: int) -> tuple[list[float], list[str]]:
    """Registers `count` subjects of 5 images each; returns the latencies and the subject ids."""
    latencies, subject_ids = [], []
    for i in range(count):
        files = [("images", (f"{j}.png", _png(i * 5 + j), "image/png")) for j in range(5)]
        start = time.perf_counter()
        subject = client.post("/v1/subjects", data={"name": f"s{i}", "class_noun": "dog"}, files=files)
        latencies.append(time.perf_counter() - start)
        subject.raise_for_status()
        subject_ids.append(subject.json()["id"])
    return latencies, subject_ids


def _submit_protections(client: httpx.Client, subject_ids: list[str]) -> tuple[list[float], str]:
    """Submits one protection per subject; returns the latencies and the last job's id."""
    latencies, job_id = [], ""
    for i, subject_id in enumerate(subject_ids):
        start = time.perf_counter()
        job = client.post(
            "/v1/protections",
            json={"subjects": [{"subject_id": subject_id}]},
            headers={"Idempotency-Key": f"bench-{i}"},
        )
        latencies.append(time.perf_counter() - start)
        job.raise_for_status()
        job_id = job.json()["id"]
    return latencies, job_id


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Reads one whole HTTP/1.1 response with a Content-Length body; returns its status and body."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
    return int(lines[0].split(" ", 2)[1]), await reader.readexactly(length)


CHECK_EVERY = 50  # every 50th body of a connection (its first included) is parsed and checked


async def _status_client(port: int, request: bytes, job_id: str, stop: float) -> tuple[int, int]:
    """One keep-alive connection sending `request` until `stop`; returns (responses, bad responses): not 200, or a
    sampled body that is not the job's JSON."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    done = errors = 0
    try:
        while time.monotonic() < stop:
            writer.write(request)
            status, body = await _read_response(reader)
            errors += status != 200 or (done % CHECK_EVERY == 0 and json.loads(body).get("id") != job_id)
            done += 1
    finally:
        writer.close()
        await writer.wait_closed()
    return done, errors


async def _status_load(port: int, key: str, job_id: str, seconds: float, concurrency: int) -> tuple[int, int]:
    """GET /v1/jobs/{id} from `concurrency` connections for `seconds`. A bare HTTP/1.1 client on asyncio streams,
    one request in flight per connection (no pipelining, like real clients): it costs the shared CPUs about a tenth
    of what the server spends per request, several times less than httpx, which would be the bottleneck."""
    request = (
        f"GET /v1/jobs/{job_id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\n"
        "Accept: application/json\r\n\r\n"
    ).encode()
    stop = time.monotonic() + seconds
    results = await asyncio.gather(*(_status_client(port, request, job_id, stop) for _ in range(concurrency)))
    return sum(done for done, _ in results), sum(errors for _, errors in results)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--submits", type=int, default=100, help="subjects registered and protections submitted")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of the status GET load")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent status GET clients")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--http", default="auto", help="uvicorn's HTTP parser: auto (httptools if installed), h11")
    parser.add_argument("--loop", default="auto", help="uvicorn's event loop: auto (uvloop if installed), asyncio")
    parser.add_argument(
        "--broker-url",
        default=DEFAULT_BROKER_URL,
        help="an empty Redis database that queues the submitted jobs; emptied at the end (default %(default)s)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="persguard-bench-") as tmp, _private_broker(args.broker_url):
        env = {
            **os.environ,
            "PERSGUARD_DATABASE_URL": os.environ.get("PERSGUARD_DATABASE_URL", f"sqlite:///{tmp}/bench.sqlite3"),
            "PERSGUARD_STORAGE_DIR": os.environ.get("PERSGUARD_STORAGE_DIR", f"{tmp}/storage"),
            "PERSGUARD_WORKDIR": f"{tmp}/jobs",
            "PERSGUARD_BROKER_URL": args.broker_url,
        }
        key = _bench_key(env["PERSGUARD_DATABASE_URL"])
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        server = _start_server(env, port, args)
        try:
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
                register, subject_ids = _register_subjects(client, args.submits)
                cpu_before = _cpu_seconds(server.pid)
                submit, job_id = _submit_protections(client, subject_ids)
                submit_cpu = _cpu_seconds(server.pid) - cpu_before
            cpu_before, client_before = _cpu_seconds(server.pid), time.process_time()
            done, errors = asyncio.run(_status_load(port, key, job_id, args.seconds, args.concurrency))
            status_cpu = _cpu_seconds(server.pid) - cpu_before
            client_cpu = time.process_time() - client_before
        finally:
            server.terminate()
            server.wait(timeout=30)

    def ms(samples: list[float], q: float) -> str:
        return f"{_percentile(samples, q) * 1000:.1f} ms"

    print(
        f"database: {env['PERSGUARD_DATABASE_URL'].split(':')[0]}, uvicorn workers: {args.workers}, "
        f"http: {args.http}, loop: {args.loop}, cpus: {os.cpu_count()}"
    )
    print(
        f"register subject (5 x 64x64 PNG), n={len(register)}: p50 {ms(register, 0.5)}, p99 {ms(register, 0.99)}, "
        f"mean {statistics.mean(register) * 1000:.1f} ms"
    )
    print(
        f"submit protection, n={len(submit)}: p50 {ms(submit, 0.5)}, p99 {ms(submit, 0.99)}, max {ms(submit, 1)}, "
        f"server CPU {submit_cpu / len(submit) * 1000:.2f} ms per request (target p99 <= 50 ms)"
    )
    print(
        f"status GET: {done / args.seconds:.0f} requests/s over {args.seconds:.0f} s with {args.concurrency} "
        f"clients, {errors} errors (target >= 1000 requests/s)"
    )
    if done:
        per_request = status_cpu / done * 1000
        print(
            f"status GET server CPU: {per_request:.2f} ms per request, so one worker process on a free core "
            f"serves about {1000 / per_request:.0f} requests/s (load generator excluded)"
        )
        print(f"status GET load generator CPU: {client_cpu / done * 1000:.2f} ms per request (it shares the cores)")
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
