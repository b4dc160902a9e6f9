"""Showing a job while it runs: on a terminal a tqdm bar (step/total, phase, the server's ETA), elsewhere (CI logs)
one line per change of status or phase and at most one per `interval_s` in between."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm import tqdm

from persguard_client.models import Job


def format_eta(seconds: float | None) -> str:
    """`1m05s` / `42s`; empty when unknown."""
    if seconds is None:
        return ""
    seconds = max(0, round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def describe(job: Job) -> str:
    """`running (protecting): step 40/100, eta 12s` (the phase and ETA only when the server reports them)."""
    phase = f" ({job.phase})" if job.phase else ""
    eta = f", eta {format_eta(job.eta_seconds)}" if job.eta_seconds is not None and not job.finished else ""
    return f"{job.status}{phase}: step {job.step}/{job.total_steps}{eta}"


class JobProgress:
    """A callable for `PersGuardClient.wait_for_job(on_update=...)`; `close()` when the wait is over."""

    def __init__(self, file: TextIO | None = None, *, bar: bool | None = None, interval_s: float = 10.0) -> None:
        self.file = file or sys.stderr
        self.use_bar = self.file.isatty() if bar is None else bar
        self.interval_s = interval_s
        self._bar: tqdm | None = None
        self._key: tuple[str, str | None, int] | None = None
        self._last_line = float("-inf")

    def __call__(self, job: Job) -> None:
        if self.use_bar:
            self._update_bar(job)
        else:
            self._print_line(job)

    def _update_bar(self, job: Job) -> None:
        total = max(job.total_steps, 1)
        if self._bar is None:
            self._bar = tqdm(total=total, file=self.file, unit="step", dynamic_ncols=True, leave=True)
        elif self._key is not None and (self._key[1] != job.phase or self._bar.total != total):
            self._bar.reset(total=total)  # a new phase (verification) counts its own steps
        self._key = (job.status, job.phase, job.step)
        self._bar.set_description(job.status + (f" ({job.phase})" if job.phase else ""), refresh=False)
        eta = format_eta(job.eta_seconds)
        self._bar.set_postfix_str(f"eta {eta}" if eta and not job.finished else "", refresh=False)
        self._bar.n = min(job.step, total)
        self._bar.refresh()

    def _print_line(self, job: Job) -> None:
        now = time.monotonic()
        changed = self._key is None or self._key[:2] != (job.status, job.phase)
        if changed or (now - self._last_line >= self.interval_s and self._key[2] != job.step):
            print(f"  job {job.id}: {describe(job)}", file=self.file, flush=True)
            self._key, self._last_line = (job.status, job.phase, job.step), now

    def close(self) -> None:
        """End the bar (a no-op for line output)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
