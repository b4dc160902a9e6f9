"""Worker settings that would lose or duplicate jobs are refused at start-up; the worker's S3 credentials."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from common.settings import Settings


def test_a_visibility_timeout_not_above_the_hard_time_limit_is_refused() -> None:
    with pytest.raises(ValidationError, match="VISIBILITY_TIMEOUT_S must exceed"):
        Settings(job_soft_time_limit_s=3600, job_time_limit_s=7200, broker_visibility_timeout_s=7200)


def test_a_heartbeat_not_shorter_than_the_lease_is_refused() -> None:
    with pytest.raises(ValidationError, match="HEARTBEAT_S must be shorter"):
        Settings(job_lease_s=10, job_heartbeat_s=10)


def test_the_defaults_are_consistent() -> None:
    settings = Settings()
    assert settings.job_soft_time_limit_s < settings.job_time_limit_s < settings.broker_visibility_timeout_s


def test_the_worker_context_talks_to_s3_with_the_worker_credentials(
    s3_server, sqlite_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker import context as context_module

    settings = Settings(
        database_url=sqlite_database,
        storage_backend="s3",
        s3_bucket="persguard-worker-test",
        s3_endpoint_url=s3_server.endpoint_url,
        s3_api_access_key=s3_server.access_key,
        s3_api_secret_key="not-the-api-secret",  # signing with it would be refused
        s3_worker_access_key=s3_server.access_key,
        s3_worker_secret_key=s3_server.secret_key,
    )
    monkeypatch.setattr(context_module, "get_settings", lambda: settings)
    context_module.context.cache_clear()
    try:
        storage = context_module.context().storage
        storage.put_bytes("checkpoints/test/model.tar", b"x")
        assert storage.exists("checkpoints/test/model.tar")
    finally:
        context_module.context.cache_clear()
