"""Generate images with a StableDiffusionPipeline: seeded per image, returned as uint8 arrays."""

from __future__ import annotations

import numpy as np
import torch
from diffusers import StableDiffusionPipeline


@torch.no_grad()
def generate(
    pipe: StableDiffusionPipeline,
    prompts: list[str],
    *,
    seed: int = 0,
    steps: int = 25,
    guidance_scale: float = 7.5,
    batch_size: int = 32,
) -> np.ndarray:
    """uint8 (len(prompts), H, W, 3): image i uses generator seed `seed + i`, so results do not depend on
    batch size (up to float rounding)."""
    out = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        generators = [torch.Generator().manual_seed(seed + start + i) for i in range(len(chunk))]
        images = pipe(
            chunk,
            num_inference_steps=steps,
            guidance_scale=guidance_scale,
            generator=generators,
            output_type="np",
        ).images
        out.append((images * 255.0 + 0.5).clip(0, 255).astype(np.uint8))
    return np.concatenate(out)
