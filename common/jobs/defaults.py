"""The service's default implantation and verification: the core's, imported only when a job runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from common.jobs.callbacks import CancelFn, ProgressFn, StepProgressFn
from common.jobs.errors import JobCancelled
from common.jobs.model_cache import process_cache
from persguard_core.spec import ProtectionSpec


def default_protect_fn(spec: ProtectionSpec, workdir: Path, progress: ProgressFn, should_cancel: CancelFn) -> Path:
    """The core's implantation (persguard_core.protect); returns the publishable model folder.

    The base model comes from this process's cache (`common.jobs.model_cache`): loaded by the first job on it,
    reused by the next ones; the core trains copies of it and leaves it as it was.

    The core keeps its resumable training state under `workdir/protection/private/state` (`STATE_FILE`), which
    the runner restores from storage before a retry, so a retried job resumes instead of restarting.
    """
    from persguard_core.implant.unet_loop import ImplantCancelled
    from persguard_core.protect import protect

    quiet_progress_bars()
    device = "cuda" if _cuda_available() else "cpu"
    try:
        with process_cache().use(spec.base_model, device) as base:
            result = protect(
                spec,
                workdir / "protection",
                progress=lambda event: progress(event.step, event.total, event.losses),
                should_cancel=should_cancel,
                device=device,
                base=base,
            )
    except ImplantCancelled as exc:
        raise JobCancelled(str(exc)) from exc
    return result.model_dir


def quiet_progress_bars() -> None:
    """No tqdm bars from diffusers / transformers model loading in service logs."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def default_verify_fn(
    model_dir: Path, spec: ProtectionSpec, preset: str, out_dir: Path, progress: StepProgressFn
) -> dict[str, Any]:
    """The core's verification (persguard_core.verify.service), reporting `progress(step, total)`."""
    from persguard_core.verify.service import verify_protection

    quiet_progress_bars()
    return dict(verify_protection(model_dir, spec, preset, out_dir, progress=progress))
