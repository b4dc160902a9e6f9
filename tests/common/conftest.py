"""Fixtures of the common tests: a session factory on each database, and the storage backends (the local
directory and SeaweedFS's S3)."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from common.db import SessionFactory, make_engine, make_session_factory
from common.jobs.config import JobConfig
from common.storage import LocalStorage, S3Storage, Storage


@pytest.fixture
def session_factory(database: str) -> Iterator[SessionFactory]:
    engine = make_engine(database)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> JobConfig:
    """Job runs for tests: fake implantation steps take no time, heartbeats are fast, nothing is throttled but the
    state upload interval (its default)."""
    monkeypatch.setenv("FAKE_STEP_S", "0")
    return JobConfig(workdir_root=tmp_path / "work", heartbeat_s=0.2, progress_interval_s=0, cancel_check_interval_s=0)


@pytest.fixture
def make_s3_storage(s3_server) -> Callable[..., S3Storage]:
    """Builds S3Storage clients of the test server; small part sizes so that tests exercise multipart uploads."""

    def make(bucket: str = "persguard-test", secret_key: str | None = None) -> S3Storage:
        return S3Storage(
            bucket=bucket,
            endpoint_url=s3_server.endpoint_url,
            access_key=s3_server.access_key,
            secret_key=secret_key or s3_server.secret_key,
            multipart_threshold=5 * 1024 * 1024,
            multipart_chunk=5 * 1024 * 1024,
        )

    return make


@pytest.fixture
def s3_storage(make_s3_storage: Callable[..., S3Storage]) -> S3Storage:
    storage = make_s3_storage()
    storage.ensure_bucket()
    return storage


@pytest.fixture
def local_storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "storage", secrets.token_bytes(32))


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest) -> Storage:
    return request.getfixturevalue(f"{request.param}_storage")
