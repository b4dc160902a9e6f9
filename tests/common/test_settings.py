"""The typed settings: the public base URL that download links are built on; production's refusal of missing or
default secrets (PERSGUARD_ENV); each process's S3 credentials."""

from __future__ import annotations

import os
import secrets

import pytest
from pydantic import ValidationError

from common.settings import Settings, UnsafeSettings


def test_the_public_base_url_defaults_to_the_embedded_server_and_loses_its_trailing_slash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PERSGUARD_PUBLIC_BASE_URL", raising=False)
    assert Settings().public_base_url == "http://127.0.0.1:8000"
    assert Settings(public_base_url="https://pg.example.com/api/").public_base_url == "https://pg.example.com/api"
    monkeypatch.setenv("PERSGUARD_PUBLIC_BASE_URL", "https://pg.example.com:8443")
    assert Settings().public_base_url == "https://pg.example.com:8443"


@pytest.mark.parametrize(
    "url",
    ["pg.example.com", "/v1", "ftp://pg.example.com", "https://", "https://u:p@pg.example.com", "https://a.b/?x=1"],
)
def test_a_public_base_url_that_is_not_a_plain_http_address_is_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="PERSGUARD_PUBLIC_BASE_URL"):
        Settings(public_base_url=url)


# --- PERSGUARD_ENV: development runs on embedded defaults, production refuses missing or default secrets ---

# What docker-compose.yml shipped before secrets moved to the env file: each one counts as a default.
COMPOSE_DEFAULTS = {
    "database_url": "postgresql+psycopg://persguard:persguard@postgres:5432/persguard",
    "broker_url": "redis://redis:6379/0",
    "storage_backend": "s3",
    "s3_endpoint_url": "http://s3:8333",
    "s3_access_key": "persguard",
    "s3_secret_key": "change-me-s3-secret",
    "signing_secret": "change-me-signing-secret",
}


def _generated() -> dict[str, str]:
    """A production configuration with generated secrets."""
    return {
        "database_url": f"postgresql+psycopg://persguard:{secrets.token_hex(16)}@postgres:5432/persguard",
        "broker_url": f"redis://:{secrets.token_hex(16)}@redis:6379/0",
        "storage_backend": "s3",
        "s3_endpoint_url": "http://s3:8333",
        "s3_api_access_key": secrets.token_hex(10),
        "s3_api_secret_key": secrets.token_hex(20),
        "s3_worker_access_key": secrets.token_hex(10),
        "s3_worker_secret_key": secrets.token_hex(20),
        "signing_secret": secrets.token_hex(32),
        "session_secret": secrets.token_hex(32),
    }


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("PERSGUARD_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_development_is_the_default_and_needs_no_configuration(clean_env: pytest.MonkeyPatch) -> None:
    settings = Settings()
    assert settings.env == "development"
    assert settings.storage_backend == "local" and settings.signing_secret is None
    Settings(**COMPOSE_DEFAULTS)  # development accepts the defaults too: `make demo`, the tests, a local compose


def test_production_refuses_the_defaults_compose_shipped_naming_each_variable() -> None:
    with pytest.raises(UnsafeSettings) as refused:
        Settings(env="production", **COMPOSE_DEFAULTS)
    message = str(refused.value)
    for variable in (
        "PERSGUARD_DATABASE_URL",
        "PERSGUARD_BROKER_URL",
        "PERSGUARD_S3_ACCESS_KEY",
        "PERSGUARD_S3_SECRET_KEY",
        "PERSGUARD_SIGNING_SECRET",
    ):
        assert variable in message
    assert "openssl rand" in message, "says how to make a secret"
    assert "change-me-s3-secret" not in message and "change-me-signing-secret" not in message, "no values echoed"


@pytest.mark.parametrize(
    ("override", "variable", "why"),
    [
        ({"storage_backend": "local", "signing_secret": None}, "PERSGUARD_SIGNING_SECRET", "unset"),
        ({"database_url": "postgresql+psycopg://persguard@db:5432/pg"}, "PERSGUARD_DATABASE_URL", "no password"),
        ({"database_url": "postgresql://postgres:postgres@db/pg"}, "PERSGUARD_DATABASE_URL", "known default"),
        ({"broker_url": "redis://redis:6379/0"}, "PERSGUARD_BROKER_URL", "no password"),
        ({"broker_url": "redis://:change-me-redis-password@redis:6379/0"}, "PERSGUARD_BROKER_URL", "known default"),
        ({"s3_api_secret_key": "change-me-api-secret"}, "PERSGUARD_S3_API_SECRET_KEY", "known default"),
        ({"s3_worker_secret_key": None}, "PERSGUARD_S3_WORKER_SECRET_KEY", "unset"),
        (
            {"s3_api_access_key": None, "s3_api_secret_key": None, "s3_worker_access_key": None,
             "s3_worker_secret_key": None},
            "PERSGUARD_S3_ACCESS_KEY",
            "unset",
        ),
    ],
    ids=["signing-unset", "db-no-password", "db-default", "redis-no-password", "redis-placeholder",
         "s3-placeholder", "s3-half-pair", "s3-none"],
)  # fmt: skip
def test_production_refuses_a_missing_or_default_secret(override: dict, variable: str, why: str) -> None:
    with pytest.raises(UnsafeSettings, match=variable) as refused:
        Settings(env="production", **{**_generated(), **override})
    assert why in str(refused.value)


def test_production_is_read_from_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("PERSGUARD_ENV", "production")
    with pytest.raises(UnsafeSettings, match="PERSGUARD_SIGNING_SECRET"):
        Settings()  # the embedded defaults: local storage needs a signing secret
    clean_env.setenv("PERSGUARD_SIGNING_SECRET", secrets.token_hex(32))
    assert Settings().env == "production", "SQLite and local storage need no other secret"


def test_production_accepts_generated_secrets() -> None:
    settings = Settings(env="production", **_generated())
    settings.check_process("api")
    settings.check_process("worker")


def test_each_process_uses_its_own_s3_credentials_or_the_shared_ones() -> None:
    settings = Settings(s3_access_key="shared", s3_secret_key="shared-secret", s3_worker_access_key="w",
                        s3_worker_secret_key="w-secret")  # fmt: skip
    assert settings.s3_credentials("worker") == ("w", "w-secret")
    assert settings.s3_credentials("api") == ("shared", "shared-secret")
    assert Settings().s3_credentials("api") == (None, None), "development: boto3's own lookup"


def test_production_refuses_a_process_without_its_s3_credentials() -> None:
    generated = {**_generated(), "s3_api_access_key": None, "s3_api_secret_key": None}
    settings = Settings(env="production", **generated)  # the worker's container: no api keys there
    settings.check_process("worker")
    with pytest.raises(UnsafeSettings, match="PERSGUARD_S3_API_ACCESS_KEY"):
        settings.check_process("api")


@pytest.mark.parametrize("url", ["s3.example.com", "ftp://s3.example.com", "https://u:p@s3.example.com"])
def test_a_public_s3_endpoint_that_is_not_a_plain_http_address_is_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="PERSGUARD_S3_PUBLIC_ENDPOINT_URL"):
        Settings(s3_public_endpoint_url=url)


def test_production_api_needs_a_session_secret_that_is_no_default() -> None:
    unset = Settings(env="production", **{**_generated(), "session_secret": None})
    unset.check_process("worker")  # only the api signs web sign-ins
    with pytest.raises(UnsafeSettings, match="PERSGUARD_SESSION_SECRET is unset"):
        unset.check_process("api")
    with pytest.raises(UnsafeSettings, match="PERSGUARD_SESSION_SECRET is a known default"):
        Settings(env="production", **{**_generated(), "session_secret": "change-me-session-secret"})
    Settings(session_secret="change-me").check_process("api")  # development takes anything
