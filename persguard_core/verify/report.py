"""Verification reports: JSON plus one self-contained HTML page (image grids, loss curves, results table).

report.json: `setting`, `summary` (VerificationResult.summary), `n_images`, `grid_columns` (images per row of each
case's grid) and `cases`, one per attacked case with CaseResult's fields; its `verdicts` are the judge on each
generated image (verify/verdicts.py: `protective`, `kinds`, `similarity`, and `sample`: the image's place in the
case's grid, left to right and top to bottom, or null when not shown). report.html shows each case's grid under a
heading whose alt text is the case's verdict, then each shown image's verdict in words.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image

from persguard_core.verify.run import CaseResult, VerificationResult
from persguard_core.verify.verdicts import ImageVerdict, verdict_label

GRID_COLUMNS = 8  # images per row of a case's grid
GRID_SCALE = 3  # pixels of a grid per image pixel


def grid_png(images: np.ndarray, columns: int = GRID_COLUMNS, scale: int = GRID_SCALE) -> bytes:
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
    """report.json's content (the module docstring)."""
    cases = [{k: v for k, v in asdict(c).items() if k != "samples"} for c in result.cases]
    return {
        "setting": result.setting,
        "summary": result.summary(),
        "cases": cases,
        "n_images": result.n_images,
        "grid_columns": GRID_COLUMNS,
    }


def image_label(case: CaseResult, verdict: ImageVerdict) -> str:
    """One image's verdict in words, with its identity similarity."""
    label = verdict_label(case.protected, case.behaviour, verdict.protective, verdict.kinds)
    return label if verdict.similarity is None else f"{label}, similarity {verdict.similarity:.2f}"


def _verdicts_html(case: CaseResult, image_width: int) -> str:
    """The shown images' verdicts, one under each image of the grid, in its order; empty without verdicts."""
    shown = sorted((v for v in case.verdicts if v.sample is not None), key=lambda v: v.sample)
    if not shown:
        return ""
    style = f"display:grid;grid-template-columns:repeat({GRID_COLUMNS},{image_width}px);padding:0;margin:4px 0 0"
    items = "".join(f"<li>{v.sample + 1}: {html.escape(image_label(case, v))}</li>" for v in shown)
    flagged = sum(v.protective for v in case.verdicts)
    output = "the protective output" if case.protected else "a false trigger"
    return (
        f'<ol class="verdicts" style="{style}">{items}</ol>'
        f"<p>Judge: {flagged} of {len(case.verdicts)} generated images show {output}.</p>"
    )


def _case_section(case: CaseResult) -> str:
    """A case's heading, its grid (alt text: the case's verdict) and the verdict on each image shown."""
    kind = "protected" if case.protected else "unprotected"
    label = f"{case.case} ({kind}): protective output in {case.protective_rate:.0%}, similarity {case.similarity:.2f}"
    grid = _img_tag(case.samples, label)
    verdicts = _verdicts_html(case, case.samples.shape[2] * GRID_SCALE)
    return f"<h3>After the attack: {html.escape(label)}</h3>{grid}{verdicts}"


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
    sections += [_case_section(case) for case in result.cases if case.samples is not None]
    for name, images in (grids or {}).items():
        sections.append(f"<h3>{html.escape(name)}</h3>{_img_tag(images, name)}")
    if history:
        sections.append(f"<h2>Implantation losses</h2>{loss_svg(history)}")
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>PersGuard verification</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 10px;text-align:left}"
        "img{image-rendering:pixelated}ol.verdicts li{list-style:none;font-size:12px}</style></head><body>"
        f"<h1>PersGuard verification: {html.escape(result.setting)}</h1>{''.join(sections)}</body></html>"
    )
    html_path = out_dir / "report.html"
    html_path.write_text(page)
    return json_path, html_path
