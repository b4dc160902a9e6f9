"""Fake implantation and verification for worker processes started by the tests (PERSGUARD_PROTECT_FN).

`stepping_protect` behaves like the core where the service can see it: `spec.training.steps` steps of
`FAKE_STEP_S` seconds, progress after each, the cancel check before each, a resumable state file every
`spec.training.checkpoint_every` steps at the core's path (`STATE_FILE`; a JSON stand-in for the core's
safetensors: the service only moves the file), resuming from it when present. Each run appends
`<pid> <job subject> start <resumed step>` and `... end` lines to `FAKE_LOG`, so tests can count runs.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from common.jobs import JobCancelled
from common.jobs.training_state import STATE_FILE
from persguard_core.spec import ProtectionSpec


def _log(line: str) -> None:
    path = os.environ.get("FAKE_LOG")
    if path:
        with open(path, "a") as handle:
            handle.write(f"{os.getpid()} {line}\n")


def stepping_protect(spec: ProtectionSpec, workdir: Path, progress, should_cancel) -> Path:
    """See the module docstring."""
    step_s = float(os.environ.get("FAKE_STEP_S", "0.2"))
    total, every = spec.training.steps, spec.training.checkpoint_every
    state = workdir / STATE_FILE
    start = json.loads(state.read_text())["step"] if state.exists() else 0
    tag = spec.subjects[0].name
    _log(f"{tag} start {start}")
    for step in range(start + 1, total + 1):
        if should_cancel():
            _log(f"{tag} cancelled")
            raise JobCancelled(f"cancelled at step {step - 1}")
        time.sleep(step_s)
        if step % every == 0 or step == total:
            state.parent.mkdir(parents=True, exist_ok=True)
            tmp = state.with_suffix(".tmp")
            tmp.write_text(json.dumps({"step": step}))
            tmp.replace(state)
        progress(step, total, {"bb": 1.0 / step})
    out = workdir / "protection" / "model"
    out.mkdir(parents=True, exist_ok=True)
    (out / "model_index.json").write_text(json.dumps({"resumed_from": start, "pid": os.getpid()}))
    (out / "unet.safetensors").write_bytes(b"".join(Path(p).read_bytes()[:64] for p in spec.subjects[0].images))
    _log(f"{tag} end")
    return out


def fake_verify(model_dir: Path, spec: ProtectionSpec, preset: str, out_dir: Path, progress=None) -> dict[str, float]:
    """Writes a report pair and a grid; the protective rate is 1 for the `pattern` behaviour. Reports no progress:
    the job row keeps the implantation's."""
    summary = {"psr": 1.0, "leakage": 0.0, "false_trigger": 0.0, "benign_fidelity": float("nan")}
    (out_dir / "report.json").write_text(json.dumps({"preset": preset, "summary": {"psr": 1.0}}))
    (out_dir / "report.html").write_text("<html><body>fake report</body></html>")
    (out_dir / "grid.png").write_bytes(b"\x89PNG fake")
    return summary


def fake_verify_damaging(
    model_dir: Path, spec: ProtectionSpec, preset: str, out_dir: Path, progress=None
) -> dict[str, float]:
    """As `fake_verify`, for a protection that works but costs the model 0.3 of its prompt following."""
    return fake_verify(model_dir, spec, preset, out_dir, progress) | {"utility_drop": 0.3}
