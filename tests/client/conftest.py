"""The real API app (SQLite, local storage, the in-process runner with a fake implantation) and a
`PersGuardClient` bound to it through FastAPI's TestClient, with a recorded `sleep`."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from common.db import make_engine, make_session_factory
from common.jobs import InProcessRunner
from common.keys import create_key, create_tenant
from common.settings import Settings
from common.storage import LocalStorage
from persguard_client import PersGuardClient
from persguard_client.retry import RetryPolicy
from tests.api.api_testkit import fake_protect

BASE_URL = "http://testserver"


@dataclass
class Service:
    """The app, its storage and keys; `client(role)` is a PersGuardClient with that role's key."""

    http: TestClient
    storage: LocalStorage
    keys: dict[str, str]
    sleeps: list[float] = field(default_factory=list)

    def client(self, role: str = "rights_holder", **kwargs: Any) -> PersGuardClient:
        def sleep(seconds: float) -> None:
            self.sleeps.append(seconds)
            import time

            time.sleep(seconds)

        kwargs.setdefault("retry", RetryPolicy(attempts=4, backoff_s=0.01, max_backoff_s=0.05))
        return PersGuardClient(BASE_URL, self.keys[role], http=self.http, sleep=sleep, **kwargs)


@pytest.fixture
def make_service(sqlite_database: str, tmp_path: Path) -> Iterator[Callable[..., Service]]:
    """Builds a Service; keyword arguments are Settings fields (e.g. rate limits)."""
    cleanups: list[Callable[[], None]] = []

    def make(**settings: Any) -> Service:
        storage = LocalStorage(tmp_path / "storage", secrets.token_bytes(32))
        engine = make_engine(sqlite_database)
        session_factory = make_session_factory(engine)
        runner = InProcessRunner(session_factory, storage, fake_protect, workdir=tmp_path / "jobs")
        config = Settings(database_url=sqlite_database, workdir=tmp_path / "jobs", public_base_url=BASE_URL, **settings)
        http = TestClient(create_app(config, session_factory=session_factory, storage=storage, runner=runner))
        http.follow_redirects = False
        http.__enter__()
        keys = {}
        with session_factory() as session:
            create_tenant(session, "acme")
            for role in ("rights_holder", "model_host", "admin"):
                keys[role] = create_key(session, "acme", role).secret
            session.commit()
        cleanups.append(lambda: (http.__exit__(None, None, None), engine.dispose()))
        return Service(http, storage, keys)

    yield make
    for cleanup in cleanups:
        cleanup()


@pytest.fixture
def service(make_service: Callable[..., Service]) -> Service:
    return make_service()
