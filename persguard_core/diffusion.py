"""Tensor helpers shared by every part that runs a Stable Diffusion model: pixels, prompt embeddings and latents.

Latents follow METHOD.md's notation: z = E(x) = scaling_factor * the VAE posterior's mean, or a sample of the
posterior where a caller trains as DreamBooth does (attacker/dreambooth.py).
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers import AutoencoderKL, StableDiffusionPipeline


def images_to_pixels(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def encode_prompts(
    pipe: StableDiffusionPipeline, prompts: list[str], text_encoder: torch.nn.Module | None = None
) -> torch.Tensor:
    """(N, L, D) text-encoder hidden states, as the SD pipeline conditions the UNet; `text_encoder` replaces the
    pipe's own (a frozen teacher copy, or one being trained)."""
    tok = pipe.tokenizer(
        prompts, padding="max_length", truncation=True, max_length=pipe.tokenizer.model_max_length, return_tensors="pt"
    )
    encoder = text_encoder if text_encoder is not None else pipe.text_encoder
    return encoder(tok.input_ids.to(encoder.device))[0]  # (N, L, D)


def encode_pixels(
    vae: AutoencoderKL,
    pixels: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    scaled: bool = True,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """z = E(x): pixels (N, 3, H, W) in [-1, 1] -> latents (N, c, h, w). The posterior mean, or with `generator` a
    sample of the posterior drawn from it; times the VAE's scaling factor unless `scaled` is False. The pixels go
    to `device` (default: the VAE's) in the VAE's dtype. Gradients flow as the caller's grad mode allows (ASPL's
    PGD differentiates through the encoder)."""
    posterior = vae.encode(pixels.to(vae.device if device is None else device, vae.dtype)).latent_dist
    z = posterior.mean if generator is None else posterior.sample(generator)  # (N, c, h, w)
    return z * vae.config.scaling_factor if scaled else z


@torch.no_grad()
def encode_latents(
    vae: AutoencoderKL,
    images: np.ndarray,
    *,
    batch: int | None = None,
    scaled: bool = True,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """z = E(x) of uint8 images (N, H, W, 3) -> (N, c, h, w) posterior means (deterministic), scaled as
    `encode_pixels`, encoded `batch` images at a time (default: all at once); no gradient."""
    step = len(images) if batch is None else batch
    chunks = [
        encode_pixels(vae, images_to_pixels(images[i : i + step]), scaled=scaled, device=device)
        for i in range(0, len(images), max(step, 1))
    ]
    return torch.cat(chunks)  # (N, c, h, w)
