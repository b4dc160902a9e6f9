"""Implantations for the live servers of these tests (PERSGUARD_PROTECT_FN)."""

from __future__ import annotations

import shutil
from pathlib import Path

from persguard_core.model_io import resolve
from persguard_core.spec import ProtectionSpec


def unprotected_protect(spec: ProtectionSpec, workdir: Path, progress, should_cancel) -> Path:
    """Reports each of the job's steps, then publishes the built-in model unchanged: a loadable checkpoint with
    no backdoor, which the smoke check's judge must refuse."""
    total = spec.total_steps
    for step in range(1, total + 1):
        progress(step, total, {"fake": 0.0})
    out = workdir / "protection" / "model"
    shutil.copytree(resolve("builtin"), out)
    return out
