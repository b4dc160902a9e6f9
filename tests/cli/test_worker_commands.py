"""`persguard worker` / `persguard beat` refuse to start without a broker, saying what to set."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.worker.harness import PERSGUARD, REPO


@pytest.mark.parametrize("command", ["worker", "beat"])
def test_worker_commands_without_a_broker_exit_with_a_hint(command: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PERSGUARD_BROKER_URL"}
    result = subprocess.run([str(PERSGUARD), command], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "PERSGUARD_BROKER_URL" in result.stderr


PRODUCTION = {
    "PERSGUARD_ENV": "production",
    "PERSGUARD_DATABASE_URL": "postgresql+psycopg://persguard:0f3c9a1be27d4e6a@127.0.0.1:9/persguard",
    "PERSGUARD_BROKER_URL": "redis://:5be1c27f0a9d43e8@127.0.0.1:9/0",
    "PERSGUARD_STORAGE_BACKEND": "s3",
    "PERSGUARD_S3_ENDPOINT_URL": "http://127.0.0.1:9",
    "PERSGUARD_S3_WORKER_ACCESS_KEY": "c1a2f3e4d5b6a7c8",
    "PERSGUARD_S3_WORKER_SECRET_KEY": "8e7d6c5b4a39281706f5e4d3c2b1a098",
}


@pytest.mark.parametrize("command", ["worker", "beat"])
@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"PERSGUARD_BROKER_URL": "redis://127.0.0.1:9/0"}, "PERSGUARD_BROKER_URL"),
        ({"PERSGUARD_S3_WORKER_SECRET_KEY": "change-me-worker-secret"}, "PERSGUARD_S3_WORKER_SECRET_KEY"),
        (
            {"PERSGUARD_S3_WORKER_ACCESS_KEY": "", "PERSGUARD_S3_API_ACCESS_KEY": "c1a2f3e4d5b6a7c8",
             "PERSGUARD_S3_API_SECRET_KEY": "8e7d6c5b4a39281706f5e4d3c2b1a098", "PERSGUARD_S3_WORKER_SECRET_KEY": ""},
            "PERSGUARD_S3_WORKER_ACCESS_KEY",
        ),
    ],
    ids=["redis-without-password", "placeholder-secret", "only-the-api-credentials"],
)  # fmt: skip
def test_worker_commands_refuse_production_with_a_missing_or_default_secret(
    command: str, change: dict[str, str], named: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERSGUARD_")}
    env.update({k: v for k, v in {**PRODUCTION, **change}.items() if v})
    result = subprocess.run([str(PERSGUARD), command], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and named in result.stderr and "Traceback" not in result.stderr


def test_the_worker_app_refuses_to_load_without_the_worker_credentials() -> None:
    """`celery -A worker.app worker` (not through `persguard worker`) is refused at import, before it connects."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERSGUARD_")}
    env.update({k.replace("_WORKER_", "_API_"): v for k, v in PRODUCTION.items()})  # the api's keys only
    script = "import worker.app"
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0 and "PERSGUARD_S3_WORKER_ACCESS_KEY" in result.stderr
