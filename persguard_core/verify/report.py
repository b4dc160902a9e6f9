"""Verification reports: JSON plus one self-contained HTML page (image grids, loss curves, results table)."""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image

from persguard_core.verify.run import VerificationResult


def grid_png(images: np.ndarray, columns: int = 8, scale: int = 3) -> bytes:
    """uint8 (N, H, W, 3) -> PNG bytes of a grid, upscaled `scale`x with nearest neighbour."""
    n, h, w, _ = images.shape
    rows = -(-n // columns)
    canvas = np.full((rows * h, columns * w, 3), 255, np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, columns)
        canvas[r * h : (r + 1) * h, c * w : (c + 1) * w] = img
    buf = io.BytesIO()
    Image.fromarray(canvas).resize((columns * w * scale, rows * h * scale), Image.NEAREST).save(buf, "PNG")
    return buf.getvalue()


def _img_tag(images: np.ndarray, alt: str) -> str:
    data = base64.b64encode(grid_png(images)).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def loss_svg(history: list[dict[str, float]], width: int = 480, height: int = 160) -> str:
    """Inline SVG with one polyline per loss term (log scale)."""
    if not history:
        return "<p>no loss history</p>"
    keys = sorted({k for row in history for k in row})
    values = np.array([[row.get(k, np.nan) for k in keys] for row in history], dtype=float)
    logv = np.log10(np.clip(values, 1e-6, None))
    lo, hi = np.nanmin(logv), np.nanmax(logv)
    colours = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
    lines = []
    for j, key in enumerate(keys):
        xs = np.linspace(0, width, len(history))
        ys = height - (logv[:, j] - lo) / max(hi - lo, 1e-9) * height
        pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True) if np.isfinite(y))
        colour = colours[j % len(colours)]
        lines.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{pts}"/>')
        lines.append(f'<text x="{width + 8}" y="{14 + 16 * j}" fill="{colour}">{html.escape(key)}</text>')
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width + 90}" height="{height}" '
        f'style="border:1px solid #ccc">{"".join(lines)}</svg>'
    )


def result_json(result: VerificationResult) -> dict:
    cases = [{k: v for k, v in asdict(c).items() if k != "samples"} for c in result.cases]
    return {"setting": result.setting, "summary": result.summary(), "cases": cases, "n_images": result.n_images}


def write_report(
    result: VerificationResult,
    out_dir: Path,
    history: list[dict[str, float]] | None = None,
    grids: dict[str, np.ndarray] | None = None,
) -> tuple[Path, Path]:
    """Write report.json and report.html into `out_dir`; `grids` adds named image grids (e.g. base vs
    protected generations)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = result_json(result)
    json_path = out_dir / "report.json"
    json_path.write_text(json.dumps(data, indent=2))
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{v:.3f}</td></tr>" for k, v in data["summary"].items())
    sections = [f"<h2>Results</h2><table>{rows}</table>"]
    for case in result.cases:
        kind = "protected" if case.protected else "unprotected"
        label = (
            f"{case.case} ({kind}): protective output in {case.protective_rate:.0%}, similarity {case.similarity:.2f}"
        )
        if case.samples is not None:
            sections.append(f"<h3>After the attack: {html.escape(label)}</h3>{_img_tag(case.samples, label)}")
    for name, images in (grids or {}).items():
        sections.append(f"<h3>{html.escape(name)}</h3>{_img_tag(images, name)}")
    if history:
        sections.append(f"<h2>Implantation losses</h2>{loss_svg(history)}")
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>PersGuard verification</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 10px;text-align:left}"
        "img{image-rendering:pixelated}</style></head><body>"
        f"<h1>PersGuard verification: {html.escape(result.setting)}</h1>{''.join(sections)}</body></html>"
    )
    html_path = out_dir / "report.html"
    html_path.write_text(page)
    return json_path, html_path
