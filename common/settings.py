"""Service settings: one pydantic-settings object, read from `PERSGUARD_*` environment variables.

With no configuration the service runs embedded: a SQLite file and a local storage directory under `./var/`
and an in-process job runner. Pointing `PERSGUARD_DATABASE_URL`, `PERSGUARD_STORAGE_BACKEND=s3` (+ the `S3_*`
settings) and `PERSGUARD_BROKER_URL` elsewhere gives the production shape with the same code.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

VAR_DIR = Path("var")


class Settings(BaseSettings):
    """Everything the api and the worker read from the environment."""

    model_config = SettingsConfigDict(env_prefix="PERSGUARD_", extra="ignore")

    database_url: str = Field(f"sqlite:///{VAR_DIR / 'persguard.sqlite3'}", description="SQLAlchemy URL")
    broker_url: str | None = Field(None, description="Redis URL of the job queue; unset = in-process runner")

    storage_backend: Literal["local", "s3"] = "local"
    storage_dir: Path = VAR_DIR / "storage"
    s3_endpoint_url: str | None = None
    s3_bucket: str = "persguard"
    s3_access_key: SecretStr | None = None
    s3_secret_key: SecretStr | None = None
    s3_region: str = "us-east-1"
    s3_multipart_threshold_bytes: int = Field(8 * 1024 * 1024, ge=5 * 1024 * 1024)
    s3_multipart_chunk_bytes: int = Field(8 * 1024 * 1024, ge=5 * 1024 * 1024)

    signing_secret: SecretStr | None = Field(None, description="HMAC key of local download URLs; unset = random")
    auth_cache_ttl_s: float = Field(5.0, ge=0, description="seconds a verified key is cached per process; 0 = off")
    download_url_ttl_s: int = Field(900, ge=1, le=7 * 24 * 3600)
    workdir: Path = VAR_DIR / "jobs"

    max_image_bytes: int = Field(10 * 1024 * 1024, ge=1)
    max_request_bytes: int = Field(60 * 1024 * 1024, ge=1)
    max_image_pixels: int = Field(4096 * 4096, ge=1)
    min_images_per_subject: int = Field(3, ge=1)
    max_images_per_subject: int = Field(20, ge=1)


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
