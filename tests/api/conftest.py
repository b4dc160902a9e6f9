"""An app per test on SQLite + local storage and on Postgres + SeaweedFS S3, with tenants and keys."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from common.db import make_engine, make_session_factory
from common.jobs import JobRunner, NullRunner
from common.keys import create_key, create_tenant
from common.settings import Settings
from common.storage import LocalStorage, S3Storage, Storage
from tests.api.api_testkit import ApiEnv

ROLES = ("rights_holder", "model_host", "admin")


def _storage(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Storage:
    if kind == "local":
        return LocalStorage(tmp_path / "storage", secrets.token_bytes(32))
    server = request.getfixturevalue("s3_server")
    storage = S3Storage(
        bucket="persguard-api-test",
        endpoint_url=server.endpoint_url,
        access_key=server.access_key,
        secret_key=server.secret_key,
    )
    storage.ensure_bucket()
    return storage


@pytest.fixture
def make_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., ApiEnv]]:
    """Builds an ApiEnv on `backend` ("sqlite" or "postgres"); `runner_factory(session_factory, storage)`."""
    cleanups: list[Callable[[], None]] = []

    def make(backend: str, runner_factory: Callable[..., JobRunner] | None = None, **settings: Any) -> ApiEnv:
        url = request.getfixturevalue(f"{backend}_database")
        storage = _storage("local" if backend == "sqlite" else "s3", tmp_path, request)
        engine = make_engine(url)
        session_factory = make_session_factory(engine)
        runner = runner_factory(session_factory, storage) if runner_factory else NullRunner()
        config = Settings(database_url=url, workdir=tmp_path / "jobs", **settings)
        app = create_app(config, session_factory=session_factory, storage=storage, runner=runner)
        client = TestClient(app, follow_redirects=False)
        client.__enter__()
        env = ApiEnv(client, session_factory, storage, runner, config)
        with session_factory() as session:
            for tenant in ("alpha", "beta"):
                create_tenant(session, tenant)
                for role in ROLES:
                    env.keys[f"{tenant}:{role}"] = create_key(session, tenant, role).secret
            session.commit()
        cleanups.append(lambda: (client.__exit__(None, None, None), engine.dispose()))
        return env

    yield make
    for cleanup in cleanups:
        cleanup()


@pytest.fixture(params=["sqlite", "postgres"])
def api(request: pytest.FixtureRequest, make_env: Callable[..., ApiEnv]) -> ApiEnv:
    """The API with a recording runner, once per backend."""
    return make_env(request.param)


@pytest.fixture
def api_pg(make_env: Callable[..., ApiEnv]) -> ApiEnv:
    """The API on Postgres + S3 only (the production shape), for the long matrices."""
    return make_env("postgres")
