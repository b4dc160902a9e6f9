"""Generate images with a StableDiffusionPipeline: seeded per image, returned as uint8 arrays."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline


@torch.no_grad()
def generate(
    pipe: StableDiffusionPipeline,
    prompts: list[str],
    *,
    seed: int = 0,
    steps: int = 25,
    guidance_scale: float = 7.5,
    batch_size: int = 32,
    on_step: Callable[[], None] | None = None,
) -> np.ndarray:
    """uint8 (len(prompts), H, W, 3): image i uses generator seed `seed + i`, so results do not depend on
    batch size (up to float rounding). `on_step()` is called after each denoising step of each batch."""
    out = []
    extra = {}
    if on_step is not None:

        def after_step(_pipe: StableDiffusionPipeline, _i: int, _t: torch.Tensor, tensors: dict) -> dict:
            on_step()
            return tensors

        extra["callback_on_step_end"] = after_step
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        generators = [torch.Generator().manual_seed(seed + start + i) for i in range(len(chunk))]
        images = pipe(
            chunk,
            num_inference_steps=steps,
            guidance_scale=guidance_scale,
            generator=generators,
            output_type="np",
            **extra,
        ).images
        out.append((images * 255.0 + 0.5).clip(0, 255).astype(np.uint8))
    return np.concatenate(out)


@torch.no_grad()
def renoise_and_denoise(
    pipe: StableDiffusionPipeline,
    images: np.ndarray,
    prompts: list[str],
    strength: float,
    *,
    seed: int = 0,
    steps: int = 25,
    guidance_scale: float = 7.5,
) -> np.ndarray:
    """img2img with stock diffusers: noise uint8 `images` (N, H, W, 3) to t = strength * T, denoise under
    `prompts`. How a model treats a given look at a given noise level (METHOD.md: the keying diagnostic)."""
    if len(images) != len(prompts):
        raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
    img2img = StableDiffusionImg2ImgPipeline(**pipe.components)
    img2img.set_progress_bar_config(disable=True)
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255.0)  # [0, 1], as the processor takes
    generators = [torch.Generator().manual_seed(seed + i) for i in range(len(images))]
    out = img2img(
        prompts,
        image=pixels,
        strength=strength,
        num_inference_steps=steps,
        guidance_scale=guidance_scale,
        generator=generators,
        output_type="np",
    ).images
    return (out * 255.0 + 0.5).clip(0, 255).astype(np.uint8)
