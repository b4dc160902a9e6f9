"""A fast stand-in for the implantation and the verification, for the pages' browser tests.

`slow_protect` takes `spec.training.steps` steps of STEP_S seconds with two falling losses, checking the cancel flag
before each, so a page can watch it advance and cancel it. `fake_verify` reports a few steps of progress and writes
the verifier's files in its formats (persguard_core/verify/report.py): report.json with one case per subject and a
control, each with the judge's verdict on each of its N_IMAGES images (the first 8 shown in its grid), and
report.html with one inline grid per case whose alt text is the judge's verdict on the case. With verdicts=False,
report.json is the older format without per-image verdicts.
"""

from __future__ import annotations

import base64
import io
import json
import time
from pathlib import Path

from PIL import Image, ImageDraw

from common.jobs import JobCancelled
from persguard_core.spec import ProtectionSpec

STEP_S = 0.1
VERIFY_STEPS = 6
PSR = 0.875
FALSE_TRIGGER = 0.0625
N_IMAGES = 16  # per case; the first 8 are its grid's
GRID_COLUMNS = 4
MISSED = (3, 11)  # the protected cases' images without the pattern (the grid's 4th: `grid` marks the others)
FALSE_TRIGGERED = (12,)  # the control's image with a false trigger (not in its grid)


def slow_protect(spec: ProtectionSpec, workdir: Path, progress, should_cancel) -> Path:
    total = spec.training.steps
    for step in range(1, total + 1):
        if should_cancel():
            raise JobCancelled(f"cancelled at step {step - 1}")
        time.sleep(STEP_S)
        progress(step, total, {"backdoor": 2.0 / (1 + 0.2 * step), "prior": 0.4 + 0.3 / step})
    out = workdir / "model"
    out.mkdir(parents=True, exist_ok=True)
    (out / "model_index.json").write_text(json.dumps({"fake": True, "steps": total}))
    (out / "unet.safetensors").write_bytes(b"".join(Path(p).read_bytes()[:64] for p in spec.subjects[0].images))
    return out


def grid(marked: bool, seed: int) -> bytes:
    """A 4x2 grid of 32-pixel tiles; `marked` tiles carry a red square in their bottom-right corner."""
    image = Image.new("RGB", (4 * 32, 2 * 32), "white")
    draw = ImageDraw.Draw(image)
    for i in range(8):
        x, y = (i % 4) * 32, (i // 4) * 32
        shade = (60 + 20 * ((i + seed) % 8), 110, 160 - 10 * i)
        draw.ellipse((x + 4, y + 4, x + 26, y + 26), fill=shade)
        if marked and i != 3:
            draw.rectangle((x + 22, y + 22, x + 31, y + 31), fill=(220, 20, 20))
    buffer = io.BytesIO()
    image.resize((4 * 96, 2 * 96), Image.NEAREST).save(buffer, "PNG")
    return buffer.getvalue()


def verdicts(protected: bool) -> list[dict]:
    """The judge on each of a case's N_IMAGES images, as report.json has them; their mean is PSR / FALSE_TRIGGER."""
    flags = [(i not in MISSED) if protected else (i in FALSE_TRIGGERED) for i in range(N_IMAGES)]
    return [
        {
            "protective": flag,
            "kinds": ["pattern"] if flag else [],
            "similarity": round(0.1 + 0.01 * i, 2) if protected else 0.8,
            "sample": i if i < 8 else None,
        }
        for i, flag in enumerate(flags)
    ]


def fake_verify(
    model_dir: Path, spec: ProtectionSpec, preset: str, out_dir: Path, progress=None, *, with_verdicts: bool = True
) -> dict:
    for step in range(VERIFY_STEPS + 1) if progress is not None else ():
        if step:
            time.sleep(STEP_S)
        progress(step, VERIFY_STEPS)
    cases = [
        {"case": s.name, "protected": True, "protective_rate": PSR, "similarity": 0.12, "behaviour": "pattern"}
        for s in spec.subjects
    ]
    cases.append({"case": "reference-dog-0", "protected": False, "protective_rate": FALSE_TRIGGER, "similarity": 0.81})
    summary = {"psr": PSR, "false_trigger": FALSE_TRIGGER, "leakage": 0.12, "benign_fidelity": 0.97}
    report = {"setting": f"verify/{preset}", "summary": summary, "cases": cases}
    if with_verdicts:
        report["grid_columns"] = GRID_COLUMNS
        report["cases"] = [case | {"verdicts": verdicts(case["protected"])} for case in cases]
    (out_dir / "report.json").write_text(json.dumps(report))
    sections = []
    for index, case in enumerate(cases):
        kind = "protected" if case["protected"] else "unprotected"
        label = (
            f"{case['case']} ({kind}): protective output in {case['protective_rate']:.0%}, "
            f"similarity {case['similarity']:.2f}"
        )
        data = base64.b64encode(grid(case["protected"], index)).decode()
        sections.append(f'<h3>After the attack: {label}</h3><img alt="{label}" src="data:image/png;base64,{data}">')
    (out_dir / "report.html").write_text(f"<!doctype html><html><body>{''.join(sections)}</body></html>")
    return summary
