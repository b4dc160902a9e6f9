"""Loss curves as an inline SVG plot: one line per loss term over the training steps, on a log scale."""

from __future__ import annotations

import math
from html import escape

from markupsafe import Markup

from api.services.dashboard import LossPoint

# Colour-blind-safe and at least 4.5:1 against white.
COLOURS = ("#b2182b", "#2166ac", "#1b7837", "#762a83", "#8c510a", "#01665e", "#4d4d4d")
FLOOR = 1e-8  # losses at or below zero are drawn at this value


def loss_plot(points: list[LossPoint], width: int = 640, height: int = 260) -> Markup:
    """The plot of `points` (oldest first); a sentence when there is nothing to draw."""
    keys = sorted({key for point in points for key, value in point.losses.items() if math.isfinite(value)})
    if not points or not keys:
        return Markup('<p class="muted">No losses recorded yet.</p>')
    left, right, top, bottom = 64, 150, 12, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    steps = [p.step for p in points]
    x0, x1 = min(steps), max(steps)
    logs = [math.log10(max(v, FLOOR)) for p in points for v in p.losses.values() if math.isfinite(v)]
    y0, y1 = math.floor(min(logs)), math.ceil(max(logs))
    y1 = y1 if y1 > y0 else y0 + 1

    def x(step: float) -> float:
        return left + (plot_w * (step - x0) / (x1 - x0) if x1 > x0 else plot_w / 2)

    def y(value: float) -> float:
        return top + plot_h * (1 - (math.log10(max(value, FLOOR)) - y0) / (y1 - y0))

    parts = [
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#ffffff" stroke="#6b6b6b"/>',
    ]
    for exponent in range(y0, y1 + 1):
        ty = y(10.0**exponent)
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{ty:.1f}" y2="{ty:.1f}" stroke="#dddddd"/>')
        parts.append(f'<text x="{left - 6}" y="{ty + 4:.1f}" text-anchor="end">1e{exponent}</text>')
    for step in sorted({x0, x1, (x0 + x1) // 2}):
        tx = x(step)
        parts.append(f'<text x="{tx:.1f}" y="{top + plot_h + 16}" text-anchor="middle">{step}</text>')
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 4}" text-anchor="middle">training step</text>')
    parts.append(
        f'<text x="14" y="{top + plot_h / 2:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 14 {top + plot_h / 2:.1f})">loss (log scale)</text>'
    )
    for index, key in enumerate(keys):
        colour = COLOURS[index % len(COLOURS)]
        series = [(p.step, p.losses[key]) for p in points if key in p.losses and math.isfinite(p.losses[key])]
        coords = " ".join(f"{x(step):.1f},{y(value):.1f}" for step, value in series)
        if len(series) == 1:
            step, value = series[0]
            parts.append(f'<circle cx="{x(step):.1f}" cy="{y(value):.1f}" r="3" fill="{colour}"/>')
        else:
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{coords}"/>')
        ly = top + 14 + 18 * index
        parts.append(
            f'<line x1="{left + plot_w + 12}" x2="{left + plot_w + 32}" y1="{ly - 4}" y2="{ly - 4}" '
            f'stroke="{colour}" stroke-width="3"/>'
        )
        last = f" {series[-1][1]:.3g}" if series else ""
        parts.append(f'<text x="{left + plot_w + 38}" y="{ly}">{escape(key)}{last}</text>')
    description = "; ".join(
        f"{key}: from {first:.3g} to {last:.3g}"
        for key in keys
        for first, last in [_ends(points, key)]
        if first is not None and last is not None
    )
    return Markup(
        f'<svg class="plot" viewBox="0 0 {width} {height}" role="img" aria-labelledby="loss-title loss-desc" '
        f'xmlns="http://www.w3.org/2000/svg" font-size="12" font-family="sans-serif" fill="#1a1a1a">'
        f'<title id="loss-title">Losses over steps {x0} to {x1}</title>'
        f'<desc id="loss-desc">{escape(description)}</desc>{"".join(parts)}</svg>'
    )


def _ends(points: list[LossPoint], key: str) -> tuple[float | None, float | None]:
    values = [p.losses[key] for p in points if key in p.losses and math.isfinite(p.losses[key])]
    return (values[0], values[-1]) if values else (None, None)
