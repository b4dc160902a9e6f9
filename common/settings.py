"""Service settings: one pydantic-settings object, read from `PERSGUARD_*` environment variables.

With no configuration the service runs embedded: a SQLite file and a local storage directory under `./var/`
and an in-process job runner. Pointing `PERSGUARD_DATABASE_URL`, `PERSGUARD_STORAGE_BACKEND=s3` (+ the `S3_*`
settings) and `PERSGUARD_BROKER_URL` elsewhere gives the production shape with the same code.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

VAR_DIR = Path("var")
DEFAULT_PUBLIC_BASE_URL = "http://127.0.0.1:8000"  # `persguard serve`'s own default address


def check_public_base_url(url: str) -> str:
    """`url` without a trailing slash, if it is an absolute http(s) URL with a host and nothing after its path."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"PERSGUARD_PUBLIC_BASE_URL must be an http(s) URL with a host, got {url!r}")
    if parts.query or parts.fragment or parts.username or parts.password or "@" in parts.netloc:
        raise ValueError(f"PERSGUARD_PUBLIC_BASE_URL must have no credentials, query or fragment, got {url!r}")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


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
    public_base_url: str = Field(
        DEFAULT_PUBLIC_BASE_URL,
        description="scheme://host[:port][/path] at which clients reach the API: local-storage download links are "
        "built on it, never on a request's Host header. `persguard serve` defaults it to its --host/--port",
    )
    auth_cache_ttl_s: float = Field(5.0, ge=0, description="seconds a verified key is cached per process; 0 = off")
    download_url_ttl_s: int = Field(900, ge=1, le=7 * 24 * 3600)
    workdir: Path = VAR_DIR / "jobs"

    # Job execution (in-process runner and Celery workers alike).
    job_lease_s: float = Field(120.0, gt=0, description="a running job whose heartbeat is older than this is dead")
    job_heartbeat_s: float = Field(15.0, gt=0, description="how often a running job renews its lease")
    job_requeue_after_s: float = Field(
        900.0, gt=0, description="a job waiting this long for its doorbell (lost message) is enqueued again"
    )
    progress_interval_s: float = Field(1.0, ge=0, description="at most one progress write per interval")
    cancel_check_interval_s: float = Field(1.0, ge=0, description="at most one cancel-flag read per interval")
    state_upload_interval_s: float = Field(
        60.0,
        ge=0,
        description="at least this long between training-state uploads, however often the core saves its state "
        "(training.checkpoint_every); the newest state is uploaded too when a job ends failed or to be retried",
    )
    max_attempts: int = Field(
        5, ge=1, description="a job whose worker died this many times fails instead of being re-queued again"
    )
    transient_retries: int = Field(8, ge=0, description="retries of a job after storage/broker/database errors")
    retry_backoff_s: float = Field(5.0, gt=0, description="first retry delay; doubles per retry")
    retry_backoff_max_s: float = Field(600.0, gt=0)
    verify_pass_psr: float = Field(0.5, ge=0, le=1, description="a verification passes at this protection rate")
    verify_max_attempts: int = Field(
        10,
        ge=1,
        description="attempts at verifying one checkpoint (transient errors, worker deaths) before it is recorded "
        "as failed",
    )
    base_model_cache_size: int = Field(
        1, ge=0, description="base models a job process keeps loaded between jobs (on the job's device); 0 = off"
    )

    # Celery workers (worker/).
    job_soft_time_limit_s: int = Field(6 * 3600, ge=1, description="the task is asked to stop (fails the job)")
    job_time_limit_s: int = Field(6 * 3600 + 600, ge=1, description="the worker process is killed")
    broker_visibility_timeout_s: int = Field(
        12 * 3600, ge=1, description="an unacknowledged message is redelivered after this; > the longest job"
    )
    reconcile_interval_s: float = Field(60.0, gt=0, description="how often beat runs the reconciler")
    purge_interval_s: float = Field(3600.0, gt=0, description="how often beat sweeps orphaned objects")
    orphan_grace_s: float = Field(6 * 3600, ge=0, description="objects no row refers to are deleted after this")
    failed_state_retention_s: float = Field(7 * 24 * 3600, ge=0, description="training state of failed jobs")
    protect_fn: str | None = Field(
        None, description="import path module:function of the implantation (tests, experiments); unset = the core"
    )
    verify_fn: str | None = Field(None, description="import path of the verification; unset = the core")
    torch_threads: int | None = Field(None, ge=1, description="torch.set_num_threads in each worker process")

    max_image_bytes: int = Field(10 * 1024 * 1024, ge=1)
    max_request_bytes: int = Field(60 * 1024 * 1024, ge=1)
    max_image_pixels: int = Field(4096 * 4096, ge=1)
    min_images_per_subject: int = Field(3, ge=1)
    max_images_per_subject: int = Field(20, ge=1)

    @field_validator("public_base_url")
    @classmethod
    def _public_base_url(cls, url: str) -> str:
        return check_public_base_url(url)

    @model_validator(mode="after")
    def _limits_in_order(self) -> Settings:
        """Soft limit <= hard limit < broker visibility timeout: Redis must never redeliver a job still running."""
        if self.job_soft_time_limit_s > self.job_time_limit_s:
            raise ValueError("PERSGUARD_JOB_SOFT_TIME_LIMIT_S must not exceed PERSGUARD_JOB_TIME_LIMIT_S")
        if self.broker_visibility_timeout_s <= self.job_time_limit_s:
            raise ValueError(
                "PERSGUARD_BROKER_VISIBILITY_TIMEOUT_S must exceed PERSGUARD_JOB_TIME_LIMIT_S (the longest job), "
                "or Redis redelivers running jobs"
            )
        if self.job_heartbeat_s >= self.job_lease_s:
            raise ValueError("PERSGUARD_JOB_HEARTBEAT_S must be shorter than PERSGUARD_JOB_LEASE_S")
        return self


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
