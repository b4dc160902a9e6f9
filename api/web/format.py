"""Template filters: times, durations, sizes and shares in words."""

from __future__ import annotations

import math
from datetime import datetime

from common.models import utcnow

DASH = "—"


def duration(seconds: float | None) -> str:
    """`42 s`, `3 min 20 s`, `2 h 5 min`, `3 d 4 h`; a dash for None."""
    if seconds is None or not math.isfinite(seconds):
        return DASH
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s" if s % 60 else f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def age(moment: datetime | None, now: datetime | None = None) -> str:
    """How long ago `moment` was, in words."""
    if moment is None:
        return DASH
    return duration(((now or utcnow()) - moment).total_seconds())


def when(moment: datetime | None) -> str:
    """A UTC timestamp to the second."""
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else DASH


def size(n: int | None) -> str:
    if n is None:
        return DASH
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return DASH


def pct(value: float | None) -> str:
    if value is None or not isinstance(value, int | float) or not math.isfinite(value):
        return DASH
    return f"{value:.0%}"


def number(value: object) -> str:
    """A figure of a report: 3 significant digits for floats, a dash for missing or not-a-number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return DASH if value is None else str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return DASH
    return f"{value:.3g}" if isinstance(value, float) else str(value)
