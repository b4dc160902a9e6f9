"""The callbacks one attempt hands to the core: bounded-rate progress, cancel checks, state uploads.

Progress of either phase of a job (its implantation, then its verification) goes through `PhaseProgress`: fenced by
the attempt's lease, written at most every `progress_interval_s`, the first write also recording the phase and
where it started (time and step), from which the api estimates the time left.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select

from common.jobs.config import JobConfig
from common.jobs.lease import Lease
from common.jobs.loss_curve import LossCurve
from common.jobs.training_state import TrainingStateSync
from common.models import JobPhase, ProtectionJob, utcnow
from persguard_core.spec import ProtectionSpec

ProgressFn = Callable[[int, int, dict[str, float]], None]
StepProgressFn = Callable[[int, int], None]  # (step, total): the verification's progress
CancelFn = Callable[[], bool]
ProtectFn = Callable[[ProtectionSpec, Path, ProgressFn, CancelFn], Path]


class PhaseProgress:
    """`step` of `total` of one phase of a job, written to its row under the lease at most every `interval_s`
    (always the first and the last step). The first write also sets `phase`, `phase_started_at` and
    `phase_start_step`; `losses`, when given, replace the row's latest losses; `columns` are written with them."""

    def __init__(self, lease: Lease, phase: JobPhase, interval_s: float) -> None:
        self.lease, self.phase, self.interval_s = lease, phase, interval_s
        self._last_write = float("-inf")
        self._started = False

    def __call__(self, step: int, total: int, losses: dict[str, float] | None = None, **columns: object) -> None:
        now = time.monotonic()
        if self._started and step < total and now - self._last_write < self.interval_s:
            return
        self._last_write = now
        values: dict[str, object] = {
            "step": step,
            "total_steps": total,
            "progress": min(1.0, step / total) if total else 0.0,
            "updated_at": utcnow(),
        }
        if losses is not None:
            values["losses"] = {k: float(v) for k, v in losses.items()}
        values |= columns
        if not self._started:
            values |= {"phase": self.phase, "phase_started_at": values["updated_at"], "phase_start_step": step}
        self._started = self.lease.fenced_update(**values) or self._started


class JobCallbacks:
    """The callbacks one implant attempt hands to the core: bounded-rate progress, cancel checks, state uploads."""

    def __init__(self, lease: Lease, state: TrainingStateSync, config: JobConfig) -> None:
        self.lease, self.state, self.config = lease, state, config
        self._progress = PhaseProgress(lease, JobPhase.PROTECTING, config.progress_interval_s)
        with lease.session_factory() as session:  # a retried or resumed job's earlier losses, for its loss plot
            earlier = session.scalar(select(ProtectionJob.loss_history).where(ProtectionJob.id == lease.job_id))
        self._losses = LossCurve(earlier)
        self._last_cancel_check = float("-inf")
        self._cancelled = False

    def progress(self, step: int, total: int, losses: dict[str, float]) -> None:
        """Write progress (see `PhaseProgress`); upload new training state."""
        self.state.on_progress(step)
        self._losses.add(step, losses)
        self._progress(step, total, losses, loss_history=self._losses.points)

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
