"""The app refuses production settings with missing or default secrets, and talks to S3 as the api identity."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.main import create_app
from common.jobs import NullRunner
from common.settings import Settings, UnsafeSettings, get_settings
from common.storage import S3Storage


@pytest.fixture
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """The process settings read afresh from a cleaned environment, and forgotten afterwards."""
    for name in [n for n in os.environ if n.startswith("PERSGUARD_")]:
        monkeypatch.delenv(name)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_create_app_refuses_production_from_the_environment_without_secrets(
    fresh_settings: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fresh_settings.setenv("PERSGUARD_ENV", "production")
    fresh_settings.setenv("PERSGUARD_DATABASE_URL", f"sqlite:///{tmp_path / 'db.sqlite3'}")
    with pytest.raises(UnsafeSettings, match="PERSGUARD_SIGNING_SECRET"):
        create_app()


def test_create_app_refuses_production_without_the_api_s3_credentials(tmp_path: Path) -> None:
    settings = Settings(
        env="production",
        database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        storage_backend="s3",
        s3_endpoint_url="http://127.0.0.1:9",  # never reached: the check comes first
        s3_worker_access_key=secrets.token_hex(10),
        s3_worker_secret_key=secrets.token_hex(20),
    )
    with pytest.raises(UnsafeSettings, match="PERSGUARD_S3_API_ACCESS_KEY"):
        create_app(settings)


def test_the_app_uses_the_api_s3_credentials(s3_server, sqlite_database: str) -> None:
    settings = Settings(
        env="production",
        database_url=sqlite_database,
        storage_backend="s3",
        s3_bucket="persguard-api-test",
        s3_endpoint_url=s3_server.endpoint_url,
        s3_api_access_key=s3_server.access_key,
        s3_api_secret_key=s3_server.secret_key,
        s3_worker_access_key=s3_server.access_key,
        s3_worker_secret_key=secrets.token_hex(20),  # not the server's: signing with it would be refused
        session_secret=secrets.token_hex(32),
    )
    app = create_app(settings, runner=NullRunner())
    storage = app.state.storage
    assert isinstance(storage, S3Storage)
    storage.check()
