"""`persguard serve` / `persguard admin`: the commands operators and CI script against."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from common.keys import parse_prefix


def _persguard(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "persguard_cli.main", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_admin_creates_a_tenant_and_prints_only_the_key(tmp_path: Path) -> None:
    assert _persguard("admin", "create-tenant", "acme", cwd=tmp_path).returncode == 0
    created = _persguard("admin", "create-key", "--tenant", "acme", "--role", "model_host", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert created.stdout == key + "\n" and parse_prefix(key) is not None
    assert (tmp_path / "var" / "persguard.sqlite3").is_file(), "embedded default: a SQLite file under ./var"


def test_admin_reports_a_missing_tenant_on_stderr(tmp_path: Path) -> None:
    result = _persguard("admin", "create-key", "--tenant", "ghost", "--role", "admin", cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == "" and "no tenant named 'ghost'" in result.stderr


def test_serve_refuses_several_processes_without_a_broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PERSGUARD_BROKER_URL", raising=False)
    result = _persguard("serve", "--workers", "2", cwd=tmp_path)
    assert result.returncode == 2 and "needs PERSGUARD_BROKER_URL" in result.stderr
    assert not (tmp_path / "var").exists(), "nothing created"


@pytest.mark.parametrize(
    ("workers", "env"),
    [("1", {}), ("2", {"PERSGUARD_BROKER_URL": "redis://127.0.0.1:6379/13"})],
    ids=["embedded", "two-processes-with-a-broker"],
)
def test_serve_answers_health_checks(tmp_path: Path, workers: str, env: dict[str, str]) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "persguard_cli.main", "serve", "--port", str(port), "--workers", workers],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, **env},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
                    assert response.status == 200
                    break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, "persguard serve did not come up"
                time.sleep(0.2)
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:8000"),
        ("0.0.0.0", "http://127.0.0.1:8000"),
        ("::", "http://127.0.0.1:8000"),
        ("api.internal", "http://api.internal:8000"),
        ("::1", "http://[::1]:8000"),
    ],
)
def test_serve_names_its_own_address_in_download_links_unless_configured(host: str, url: str) -> None:
    from common.settings import Settings
    from persguard_cli.service_commands import default_public_base_url

    assert default_public_base_url(host, 8000) == url
    assert Settings(public_base_url=url).public_base_url == url


def test_serve_refuses_production_with_the_defaults_compose_shipped(tmp_path: Path) -> None:
    env = {
        "PERSGUARD_ENV": "production",
        "PERSGUARD_DATABASE_URL": "postgresql+psycopg://persguard:persguard@127.0.0.1:9/persguard",
        "PERSGUARD_BROKER_URL": "redis://127.0.0.1:9/0",
        "PERSGUARD_STORAGE_BACKEND": "s3",
        "PERSGUARD_S3_ENDPOINT_URL": "http://127.0.0.1:9",
        "PERSGUARD_S3_ACCESS_KEY": "persguard",
        "PERSGUARD_S3_SECRET_KEY": "change-me-s3-secret",
        "PERSGUARD_SIGNING_SECRET": "change-me-signing-secret",
    }
    result = _persguard("serve", cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    for variable in ("PERSGUARD_DATABASE_URL", "PERSGUARD_BROKER_URL", "PERSGUARD_S3_SECRET_KEY"):
        assert variable in result.stderr
    assert not (tmp_path / "var").exists(), "nothing created"
