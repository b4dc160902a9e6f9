"""Service settings: one pydantic-settings object, read from `PERSGUARD_*` environment variables.

With no configuration the service runs embedded: a SQLite file and a local storage directory under `./var/`
and an in-process job runner. Pointing `PERSGUARD_DATABASE_URL`, `PERSGUARD_STORAGE_BACKEND=s3` (+ the `S3_*`
settings) and `PERSGUARD_BROKER_URL` elsewhere gives the production shape with the same code.

`PERSGUARD_ENV=production` adds one rule: every secret the configuration uses must be set and must not be a known
default (`UnsafeSettings` at load, naming each variable and what to set). Development needs no configuration.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit, urlunsplit

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


Environment = Literal["development", "production"]
ProcessRole = Literal["api", "worker"]  # the api; the Celery processes (GPU workers and beat)

# Values that anyone can look up: what docker-compose.yml shipped before its secrets moved to the env file, the
# placeholders of .env.example (all `change-me-...`), and the usual stock passwords.
KNOWN_DEFAULT_SECRETS = frozenset(
    {"persguard", "postgres", "password", "secret", "changeme", "admin", "redis", "minioadmin", "seaweedfs", "test"}
)
GENERATE_HINT = "a random value, e.g. `openssl rand -hex 32`"


class UnsafeSettings(RuntimeError):
    """Production settings with a missing or known-default secret; the message names each variable and the fix.

    Not a ValueError on purpose: pydantic passes it through as it is, so the message is not wrapped in a
    validation report that would echo the configuration's values (secrets included)."""


def is_default_secret(value: str) -> bool:
    """Whether `value` is a known default or placeholder, never fit for production."""
    plain = value.strip().lower()
    return plain in KNOWN_DEFAULT_SECRETS or plain.startswith(("change-me", "changeme", "change_me"))


def _secret_problem(variable: str, value: SecretStr | None) -> str | None:
    if value is None or not value.get_secret_value():
        return f"{variable} is unset; set it to {GENERATE_HINT}"
    if is_default_secret(value.get_secret_value()):
        return f"{variable} is a known default or placeholder; set it to {GENERATE_HINT}"
    return None


def _url_password_problem(variable: str, url: str, example: str) -> str | None:
    """The password of a database or broker URL: present and not a known default."""
    parts = urlsplit(url)
    if not parts.hostname:
        return None  # a file (SQLite) or a local socket: no password to check
    if not parts.password:
        return f"{variable} has no password; put a generated one ({GENERATE_HINT}) in the URL: {example}"
    if is_default_secret(unquote(parts.password)):
        return f"{variable} has a known default password; put a generated one ({GENERATE_HINT}) in the URL: {example}"
    return None


class Settings(BaseSettings):
    """Everything the api and the worker read from the environment."""

    model_config = SettingsConfigDict(env_prefix="PERSGUARD_", extra="ignore")

    env: Environment = Field(
        "development", description="production refuses to start while a secret it uses is unset or a known default"
    )

    database_url: str = Field(f"sqlite:///{VAR_DIR / 'persguard.sqlite3'}", description="SQLAlchemy URL")
    broker_url: str | None = Field(None, description="Redis URL of the job queue; unset = in-process runner")

    storage_backend: Literal["local", "s3"] = "local"
    storage_dir: Path = VAR_DIR / "storage"
    s3_endpoint_url: str | None = None
    s3_bucket: str = "persguard"
    s3_access_key: SecretStr | None = None
    s3_secret_key: SecretStr | None = None
    s3_api_access_key: SecretStr | None = Field(None, description="the api's own S3 identity; unset = S3_ACCESS_KEY")
    s3_api_secret_key: SecretStr | None = None
    s3_worker_access_key: SecretStr | None = Field(
        None, description="the Celery processes' (workers, beat) own S3 identity; unset = S3_ACCESS_KEY"
    )
    s3_worker_secret_key: SecretStr | None = None
    s3_public_endpoint_url: str | None = Field(
        None,
        description="scheme://host[:port] at which model hosts reach the S3 server: presigned download URLs name "
        "it; the service's own traffic keeps S3_ENDPOINT_URL. Unset = S3_ENDPOINT_URL",
    )
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
    session_secret: SecretStr | None = Field(
        None,
        description="HMAC key of the web pages' sign-in cookies and report share links (docs/DASHBOARD.md); unset = "
        "random per process (development only: sessions and links then end with the process)",
    )
    session_ttl_s: int = Field(12 * 3600, ge=60, le=30 * 24 * 3600, description="lifetime of a web sign-in")
    report_link_ttl_s: int = Field(
        7 * 24 * 3600, ge=60, le=90 * 24 * 3600, description="lifetime of a report share link"
    )
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
    verify_max_utility_drop: float = Field(
        0.02,
        ge=0,
        le=1,
        description="a verification fails when the protected model's prompt following is more than this below the "
        "base model's (the verifier's utility_drop); its summary's failed_checks says so",
    )
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
    reconcile_on_lease_expiry: bool = Field(
        True,
        description="beat also runs the reconciler as soon as a job's lease runs out (it looks up the earliest "
        "lease expiry, one indexed query per check), so that a dead worker's job is re-queued within JOB_LEASE_S "
        "of its last heartbeat whatever RECONCILE_INTERVAL_S; false = every RECONCILE_INTERVAL_S only",
    )
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

    # Request guard, per-key request rate and per-tenant quotas (api/request_guard.py, api/services/quotas.py).
    max_json_body_bytes: int = Field(
        1024 * 1024, ge=1, description="largest body of any request but an upload (those have max_request_bytes)"
    )
    rate_limit_per_s: float = Field(
        1000.0, ge=0, description="requests per second per API key, counted in each API process; 0 = no limit"
    )
    rate_limit_burst: int = Field(2000, ge=1, description="requests a key may send at once before the rate applies")
    max_active_jobs_per_tenant: int = Field(1000, ge=1, description="queued + running jobs of one tenant")
    max_subjects_per_tenant: int = Field(10_000, ge=1, description="registered (not deleted) subjects of one tenant")
    max_subject_bytes_per_tenant: int = Field(
        100 * 1024**3, ge=1, description="stored bytes of one tenant's subject images (normalised PNGs)"
    )

    @field_validator("public_base_url")
    @classmethod
    def _public_base_url(cls, url: str) -> str:
        return check_public_base_url(url)

    @field_validator("s3_public_endpoint_url")
    @classmethod
    def _s3_public_endpoint_url(cls, url: str | None) -> str | None:
        if url is None or not url.strip():
            return None
        parts = urlsplit(url.strip())
        if parts.username or parts.password:
            raise ValueError("PERSGUARD_S3_PUBLIC_ENDPOINT_URL must not carry credentials")
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ValueError(f"PERSGUARD_S3_PUBLIC_ENDPOINT_URL must be an http(s) URL with a host, got {url!r}")
        return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))

    @model_validator(mode="after")
    def _production_secrets(self) -> Settings:
        """In production, each secret the configuration uses is set and no known default (UnsafeSettings)."""
        if self.env == "production":
            _refuse(self._production_problems())
        return self

    def _production_problems(self) -> list[str]:
        problems = [
            _url_password_problem(
                "PERSGUARD_DATABASE_URL", self.database_url, "postgresql+psycopg://USER:PASSWORD@HOST:5432/DB"
            )
        ]
        if self.broker_url:
            problems.append(
                _url_password_problem("PERSGUARD_BROKER_URL", self.broker_url, "redis://:PASSWORD@HOST:6379/0")
            )
        if self.storage_backend == "local" or self.signing_secret is not None:
            problems.append(_secret_problem("PERSGUARD_SIGNING_SECRET", self.signing_secret))
        if self.session_secret is not None:  # the api needs it set (check_process); any process refuses a default
            problems.append(_secret_problem("PERSGUARD_SESSION_SECRET", self.session_secret))
        if self.storage_backend == "s3":
            pairs = [(prefix, self._s3_pair(prefix)) for prefix in ("S3", "S3_API", "S3_WORKER")]
            for prefix, (access, secret) in pairs:
                if access is not None or secret is not None:
                    problems.append(_secret_problem(f"PERSGUARD_{prefix}_ACCESS_KEY", access))
                    problems.append(_secret_problem(f"PERSGUARD_{prefix}_SECRET_KEY", secret))
            if all(access is None and secret is None for _, (access, secret) in pairs):
                problems.append(
                    "PERSGUARD_S3_ACCESS_KEY and PERSGUARD_S3_SECRET_KEY are unset (and so are the per-process "
                    "PERSGUARD_S3_API_* / PERSGUARD_S3_WORKER_* keys); set the S3 credentials of this process"
                )
        return [problem for problem in problems if problem]

    def _s3_pair(self, prefix: str) -> tuple[SecretStr | None, SecretStr | None]:
        name = prefix.lower()
        return getattr(self, f"{name}_access_key"), getattr(self, f"{name}_secret_key")

    def s3_credentials(self, role: ProcessRole) -> tuple[str | None, str | None]:
        """(access key, secret key) of `role`'s process: its own pair if set, else the shared one (None = boto3's
        own lookup: environment, instance profile)."""
        access, secret = self._s3_pair(f"S3_{role.upper()}")
        if access is None and secret is None:
            access, secret = self.s3_access_key, self.s3_secret_key
        return (access.get_secret_value() if access else None, secret.get_secret_value() if secret else None)

    def check_process(self, role: ProcessRole) -> None:
        """At the start of `role`'s process in production: with S3, its own credentials (or the shared ones) must
        be set, each container being given only its own; the api, which signs web sign-ins, needs the session
        secret (UnsafeSettings otherwise)."""
        if self.env != "production":
            return
        problems = []
        if role == "api":
            problems.append(_secret_problem("PERSGUARD_SESSION_SECRET", self.session_secret))
        own = f"PERSGUARD_S3_{role.upper()}"
        if self.storage_backend == "s3" and not all(self.s3_credentials(role)):
            problems.append(
                f"{own}_ACCESS_KEY and {own}_SECRET_KEY (or the shared PERSGUARD_S3_ACCESS_KEY and "
                f"PERSGUARD_S3_SECRET_KEY) are unset; the {role} process needs its S3 identity's keys"
            )
        _refuse([problem for problem in problems if problem])

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


def _refuse(problems: list[str]) -> None:
    if problems:
        lines = "\n".join(f"  - {problem}" for problem in problems)
        raise UnsafeSettings(
            f"PERSGUARD_ENV=production and the configuration has missing or default secrets:\n{lines}\n"
            "Set them (docker compose: in .env, see .env.example), or PERSGUARD_ENV=development for a local run."
        )


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
