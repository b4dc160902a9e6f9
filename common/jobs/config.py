"""The knobs of job execution, taken from the settings once per runner."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.settings import Settings


@dataclass(frozen=True)
class JobConfig:
    """Timings and places of job execution (see `common.settings.Settings` for each field's meaning)."""

    workdir_root: Path | None = None
    lease_s: float = 120.0
    heartbeat_s: float = 15.0
    progress_interval_s: float = 1.0
    cancel_check_interval_s: float = 1.0
    state_upload_interval_s: float = 60.0
    verify_pass_psr: float = 0.5
    verify_max_utility_drop: float = 0.02
    verify_max_attempts: int = 10

    @classmethod
    def from_settings(cls, settings: Settings) -> JobConfig:
        return cls(
            workdir_root=settings.workdir,
            lease_s=settings.job_lease_s,
            heartbeat_s=settings.job_heartbeat_s,
            progress_interval_s=settings.progress_interval_s,
            cancel_check_interval_s=settings.cancel_check_interval_s,
            state_upload_interval_s=settings.state_upload_interval_s,
            verify_pass_psr=settings.verify_pass_psr,
            verify_max_utility_drop=settings.verify_max_utility_drop,
            verify_max_attempts=settings.verify_max_attempts,
        )
