"""Detectability: how an attacker who knows the method tells a protected model from its public base.

Without the subject's photos, only the weights give it away: the relative distance of each component to the base's,
||theta - theta_0|| / ||theta_0||. With them, the encoder carrier shows in one VAE round trip: the subject's photos
come back with the protective output, so their reconstruction error stands out against other photos' (a ratio
near the base model's own ratio means nothing to see).
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers import StableDiffusionPipeline

from persguard_core.generate import renoise_and_denoise
from persguard_core.implant.encoder import round_trip

COMPONENTS = ("unet", "text_encoder", "vae.encoder", "vae.decoder")


def _module(pipe: StableDiffusionPipeline, name: str) -> torch.nn.Module:
    owner, _, child = name.partition(".")
    module = getattr(pipe, owner)
    return getattr(module, child) if child else module


@torch.no_grad()
def weight_distance(pipe: StableDiffusionPipeline, base: StableDiffusionPipeline) -> dict[str, float]:
    """{component: ||theta - theta_0|| / ||theta_0||} over each component's parameters (0 where untouched)."""
    out = {}
    for name in COMPONENTS:
        mine, theirs = _module(pipe, name).state_dict(), _module(base, name).state_dict()
        diff = sum(float((mine[k].float() - v.float()).pow(2).sum()) for k, v in theirs.items())
        norm = sum(float(v.float().pow(2).sum()) for v in theirs.values())
        out[name] = (diff / norm) ** 0.5 if norm > 0 else 0.0
    return out


@torch.no_grad()
def round_trip_error(pipe: StableDiffusionPipeline, images: np.ndarray) -> float:
    """Mean absolute error of uint8 `images` (N, H, W, 3) after one VAE round trip, in [0, 1]."""
    back = round_trip(pipe.vae, images)
    return float(np.abs(back.astype(np.int16) - images.astype(np.int16)).mean() / 255.0)


IMG2IMG_STRENGTH = 0.3  # img2img as users run it to restyle a photo lightly (and as `purify` does at its top)


def img2img_error(pipe: StableDiffusionPipeline, images: np.ndarray, class_noun: str, seed: int = 0) -> float:
    """Mean absolute change of uint8 `images` (N, H, W, 3) under the pipeline's img2img at IMG2IMG_STRENGTH with
    "a photo of a {class_noun}", in [0, 1]: what a carrier costs users who edit photos rather than personalize."""
    prompts = [f"a photo of a {class_noun}"] * len(images)
    out = renoise_and_denoise(pipe, images, prompts, IMG2IMG_STRENGTH, seed=seed)
    return float(np.abs(out.astype(np.int16) - images.astype(np.int16)).mean() / 255.0)


def detectability(
    pipe: StableDiffusionPipeline, base: StableDiffusionPipeline, subject_photos: np.ndarray, other_photos: np.ndarray
) -> dict[str, float]:
    """The detectability figures: `detect/weights/<component>` (no photos needed), and with the attacker's photos
    `detect/round_trip_ratio` (their round-trip error over other photos') beside `detect/round_trip_ratio_base`."""
    figures = {f"detect/weights/{name}": d for name, d in weight_distance(pipe, base).items()}
    for suffix, model in (("", pipe), ("_base", base)):
        ratio = round_trip_error(model, subject_photos) / max(round_trip_error(model, other_photos), 1e-8)
        figures[f"detect/round_trip_ratio{suffix}"] = ratio
    return figures
