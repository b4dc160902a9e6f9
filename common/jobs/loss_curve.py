"""A job's loss history (`protection_jobs.loss_history`, the dashboard's loss plot): a bounded series of
`{"step": n, "losses": {...}}`, thinned evenly as training goes on.

Every step's losses go in; the series keeps the first step, the steps on a stride that doubles whenever it passes
`max_points` (1, 2, 4, ...) and the newest step, so a run of any length is stored in at most `max_points + 2` points
spread over all its steps. A later attempt (a retry, a re-queued job resuming from its saved state) starts from the
stored series and drops the points at or after the step it resumes from.
"""

from __future__ import annotations

import math
from typing import Any

MAX_POINTS = 200


class LossCurve:
    """The thinned series of one job; `points` is what the row stores."""

    def __init__(self, earlier: list[dict[str, Any]] | None = None, max_points: int = MAX_POINTS) -> None:
        self.max_points = max_points
        self._points = [p for p in earlier or [] if isinstance(p, dict) and isinstance(p.get("step"), int)]
        self._stride = 1
        while len(self._points) > self.max_points:
            self._thin()

    @property
    def points(self) -> list[dict[str, Any]]:
        return list(self._points)

    def add(self, step: int, losses: dict[str, float]) -> None:
        """Record `step`'s losses, to 4 significant digits (non-finite values are left out: JSON has no NaN)."""
        while self._points and self._points[-1]["step"] >= step:  # a restart, or an attempt resuming earlier
            self._points.pop()
        if len(self._points) > 1 and self._points[-1]["step"] % self._stride:  # kept only while it was the newest
            self._points.pop()
        clean = {name: float(f"{value:.4g}") for name, value in losses.items() if math.isfinite(float(value))}
        self._points.append({"step": step, "losses": clean})
        if len(self._points) > self.max_points:
            self._thin()

    def _thin(self) -> None:
        self._stride *= 2
        first, *middle, newest = self._points
        self._points = [first, *(p for p in middle if p["step"] % self._stride == 0), newest]
