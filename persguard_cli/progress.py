"""Progress bars of the CLI: one tqdm bar per phase of a job (protecting, then verifying), with step/total and
the time left.

`follow_job` polls `GET /v1/jobs/{id}` (and, once the job succeeded with a verification, its checkpoint until the
verification's report is there) and draws the job's `phase`, `step`, `total_steps` and `eta_seconds`.
`PhaseBars.local` makes the callback of work this process runs itself (`verify_protection(..., progress=...)`),
whose time left is estimated the same way: the phase's elapsed time per step done, times the steps left.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

import httpx
from tqdm import tqdm

TERMINAL = ("succeeded", "failed", "cancelled")
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"


def clock(seconds: float | None) -> str:
    """`seconds` as m:ss (h:mm:ss from an hour on); "?" when unknown."""
    if seconds is None:
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class PhaseBars:
    """One bar per phase, drawn to `file` (default stderr): `show(phase, step, total, eta_s)` moves the bar of
    `phase`, closing the previous phase's bar when the phase changes."""

    def __init__(self, file: TextIO | None = None) -> None:
        self.file = file
        self._bar: tqdm | None = None
        self._phase: str | None = None

    def show(self, phase: str, step: int, total: int, eta_s: float | None, note: str = "") -> None:
        if self._bar is None or phase != self._phase:
            self.close()
            self._phase = phase
            self._bar = tqdm(
                total=total, desc=phase, unit="step", bar_format=BAR_FORMAT, file=self.file or sys.stderr, leave=True
            )
        bar = self._bar
        if bar.total != total:
            bar.total = total
        bar.n = step
        bar.set_postfix_str(f"ETA {clock(eta_s)}{note}", refresh=True)

    def local(self, phase: str) -> Callable[[int, int], None]:
        """A `(step, total)` callback drawing `phase`, its time left estimated from the steps since its first call."""
        start: list[tuple[float, int]] = []

        def progress(step: int, total: int) -> None:
            now = time.monotonic()
            if not start:
                start.append((now, step))
            began, first = start[0]
            eta = (now - began) * (total - step) / (step - first) if step > first else None
            self.show(phase, step, total, eta)

        return progress

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@dataclass(frozen=True)
class Followed:
    """A job as it ended, and its checkpoint's verification (None: not asked for, or no checkpoint)."""

    job: dict[str, Any]
    verification: dict[str, Any] | None


def follow_job(
    client: httpx.Client,
    job_url: str,
    headers: dict[str, str],
    *,
    poll_s: float = 2.0,
    wait_for_verification: bool = True,
    bars: PhaseBars | None = None,
) -> Followed:
    """Poll the job at `job_url` until it ends (and, with `wait_for_verification`, until its checkpoint's
    verification report is written), drawing one bar per phase."""
    bars = bars or PhaseBars()
    try:
        while True:
            job = _get(client, job_url, headers)
            _draw(bars, job)
            if job["status"] in TERMINAL:
                break
            time.sleep(poll_s)
        verifying = job["status"] == "succeeded" and job.get("verification", "none") != "none"
        if not (verifying and wait_for_verification and job["links"].get("checkpoint")):
            return Followed(job, None)
        while True:
            checkpoint = _get(client, job["links"]["checkpoint"], headers)
            job = _get(client, job_url, headers)
            _draw(bars, job)
            if checkpoint.get("verification") is not None:
                return Followed(job, checkpoint["verification"])
            time.sleep(poll_s)
    finally:
        bars.close()


def _get(client: httpx.Client, url: str, headers: dict[str, str]) -> dict[str, Any]:
    response = client.get(url, headers=headers)
    response.raise_for_status()
    return response.json()


def _draw(bars: PhaseBars, job: dict[str, Any]) -> None:
    if not job.get("phase") or not job.get("total_steps"):
        return
    losses = " ".join(f"{k}={v:.4f}" for k, v in job.get("losses", {}).items()) if job["phase"] == "protecting" else ""
    bars.show(job["phase"], job["step"], job["total_steps"], job.get("eta_seconds"), f", {losses}" if losses else "")
