"""The callbacks one implant attempt hands to the core: bounded-rate progress, cancel checks, state uploads."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select

from common.jobs.config import JobConfig
from common.jobs.lease import Lease
from common.jobs.training_state import TrainingStateSync
from common.models import ProtectionJob, utcnow
from persguard_core.spec import ProtectionSpec

ProgressFn = Callable[[int, int, dict[str, float]], None]
CancelFn = Callable[[], bool]
ProtectFn = Callable[[ProtectionSpec, Path, ProgressFn, CancelFn], Path]


class JobCallbacks:
    """The callbacks one attempt hands to the core: bounded-rate progress, cancel checks, state uploads."""

    def __init__(self, lease: Lease, state: TrainingStateSync, config: JobConfig) -> None:
        self.lease, self.state, self.config = lease, state, config
        self._last_progress = 0.0
        self._last_cancel_check = float("-inf")
        self._cancelled = False

    def progress(self, step: int, total: int, losses: dict[str, float]) -> None:
        """Write progress at most every `progress_interval_s` (always on the last step); upload new state."""
        self.state.on_progress(step)
        now = time.monotonic()
        if step >= total or now - self._last_progress >= self.config.progress_interval_s:
            self._last_progress = now
            self.lease.fenced_update(
                step=step,
                total_steps=total,
                progress=min(1.0, step / total) if total else 0.0,
                losses={k: float(v) for k, v in losses.items()},
                updated_at=utcnow(),
            )

    def should_cancel(self, force: bool = False) -> bool:
        """True once the cancel flag is set (read at most every `cancel_check_interval_s`) or the lease is lost."""
        if self.lease.lost:
            return True
        now = time.monotonic()
        if not self._cancelled and (force or now - self._last_cancel_check >= self.config.cancel_check_interval_s):
            self._last_cancel_check = now
            with self.lease.session_factory() as session:
                self._cancelled = bool(
                    session.scalar(select(ProtectionJob.cancel_requested).where(ProtectionJob.id == self.lease.job_id))
                )
        return self._cancelled
