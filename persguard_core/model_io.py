"""Load and save Stable Diffusion models: the built-in model by name, any SD 1.x/2.x diffusers folder or
single-file checkpoint by path. Nothing is fetched from a hub: every load is local-files-only."""

from __future__ import annotations

import copy
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, SchedulerMixin, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

log = logging.getLogger(__name__)

BUILTIN = "builtin"
# PERSGUARD_BUILTIN_MODEL points "builtin" at another folder (e.g. a retrained candidate under evaluation)
BUILTIN_PATH = Path(
    os.environ.get("PERSGUARD_BUILTIN_MODEL", Path(__file__).resolve().parent / "assets" / "builtin-model")
)
_SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".bin")


def resolve(model: str | Path) -> Path:
    """The local path of `model`: "builtin" or a path; raises if it does not exist."""
    path = BUILTIN_PATH if str(model) == BUILTIN else Path(model).expanduser()
    if not path.exists():
        hint = " (train it with `python -m persguard_core.builtin.train`)" if str(model) == BUILTIN else ""
        raise FileNotFoundError(f"model {model!r} not found at {path}{hint}")
    return path


def load_pipeline(
    model: str | Path = BUILTIN,
    *,
    config_dir: str | Path | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> StableDiffusionPipeline:
    """Load a StableDiffusionPipeline from "builtin", a diffusers folder or a single-file checkpoint.

    A single-file checkpoint carries weights only: `config_dir` must name a local diffusers folder of the same
    architecture whose configs (and tokenizer) are used, since nothing may be downloaded.
    """
    path = resolve(model)
    if path.is_dir():
        if not (path / "model_index.json").exists():
            raise ValueError(f"{path} is not a diffusers folder: model_index.json is missing")
        pipe = StableDiffusionPipeline.from_pretrained(
            path, dtype=dtype, local_files_only=True, safety_checker=None, requires_safety_checker=False
        )
    elif path.suffix in _SINGLE_FILE_SUFFIXES:
        if config_dir is None:
            raise ValueError(
                f"{path} is a single-file checkpoint: pass config_dir, a local diffusers folder of the same "
                "architecture (SD 1.x or 2.x), to take its configs and tokenizer from"
            )
        pipe = StableDiffusionPipeline.from_single_file(
            path, config=str(resolve(config_dir)), dtype=dtype, local_files_only=True
        )
    else:
        raise ValueError(f"{path} is neither a diffusers folder nor a {'/'.join(_SINGLE_FILE_SUFFIXES)} checkpoint")
    pipe.set_progress_bar_config(disable=True)
    log.info("loaded model %s", path)
    return pipe.to(device)


@dataclass(frozen=True)
class LoadedModel:
    """A base model in memory with its identity: the folder it came from and its `model_sha256`.

    `protect` takes one instead of loading `spec.base_model` itself (a caller that keeps models loaded between
    runs); it only reads it: training happens on copies (`trainable_copy`).
    """

    path: Path
    sha256: str
    pipe: StableDiffusionPipeline


def load_model(model: str | Path = BUILTIN, *, device: str | torch.device = "cpu") -> LoadedModel:
    """`load_pipeline` of "builtin" or a diffusers folder, with the model's path and sha256."""
    path = resolve(model)
    return LoadedModel(path, model_sha256(path), load_pipeline(path, device=device))


def trainable_copy(
    base: StableDiffusionPipeline, *, text_encoder: bool = False, unet: bool = True
) -> StableDiffusionPipeline:
    """A pipeline to train without touching `base`: its own copies of the UNet (unless not `unet`), of the text
    encoder when `text_encoder`, and of the (stateful) scheduler; every other component (VAE, tokenizer, the
    frozen text encoder, feature extractor) is `base`'s own object, shared, and must only be read or replaced."""
    trained = {name for name, wanted in (("unet", unet), ("text_encoder", text_encoder)) if wanted}
    components = {
        name: copy.deepcopy(module) if name in trained else module for name, module in base.components.items()
    }
    components["scheduler"] = base.scheduler.__class__.from_config(base.scheduler.config)
    pipe = type(base)(**components, requires_safety_checker=base.config.requires_safety_checker)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def assemble(
    vae: AutoencoderKL,
    text_encoder: CLIPTextModel,
    tokenizer: CLIPTokenizer,
    unet: UNet2DConditionModel,
    scheduler: SchedulerMixin,
) -> StableDiffusionPipeline:
    """A StableDiffusionPipeline from components, without safety checker (none exists offline)."""
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_pipeline(pipe: StableDiffusionPipeline, out: str | Path) -> Path:
    """Save in diffusers format with safetensors weights."""
    out = Path(out)
    pipe.save_pretrained(out, safe_serialization=True)
    return out


def model_sha256(model: str | Path) -> str:
    """sha256 over a model's weight and config files (relative path + content), stable across copies."""
    path = resolve(model)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and p.suffix != ".md")
    digest = hashlib.sha256()
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        with file.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
