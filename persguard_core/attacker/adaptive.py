"""Adaptive attackers: what an attacker who has read docs/METHOD.md does to its photos or the released VAE before
DreamBooth, aimed at the encoder carrier (M9), which lives in the one part of the pipeline DreamBooth never trains.

- `clean-vae`: put the public base model's VAE (encoder and decoder) back; routine in SDXL and kohya tooling.
- `encoder-repair`: fine-tune a copy of the released encoder so that D(E(x)) reconstructs the attacker's own
  photos through the released decoder; the protected subject's photos are the ones that round-trip badly.
- `decoder-inversion`: never call the encoder: find latents z with D(z) ~ x by gradient descent through the
  released decoder, and DreamBooth on those.
- `purify`: the photos through the released model's img2img at a low strength first.

`personalize` runs a recipe's adaptive step, then DreamBooth, and returns the pipeline the attacker generates with.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, StableDiffusionPipeline

from persguard_core.attacker.dreambooth import ClassImagesFn, Progress, dreambooth
from persguard_core.attacker.recipe import AttackRecipe
from persguard_core.diffusion import images_to_pixels
from persguard_core.generate import renoise_and_denoise
from persguard_core.model_io import assemble


def with_vae(pipe: StableDiffusionPipeline, vae: AutoencoderKL) -> StableDiffusionPipeline:
    """`pipe`'s components (shared, not copied) with another VAE."""
    swapped = assemble(vae, pipe.text_encoder, pipe.tokenizer, pipe.unet, pipe.scheduler)
    swapped.set_progress_bar_config(disable=True)
    return swapped


def _decode(vae: AutoencoderKL, z: torch.Tensor) -> torch.Tensor:
    """D(z) for scaled latents z (N, c, h, w) -> pixels (N, 3, H, W) in about [-1, 1]."""
    return vae.decode(z / vae.config.scaling_factor).sample


def repair_encoder(vae: AutoencoderKL, images: np.ndarray, steps: int, lr: float, seed: int = 0) -> AutoencoderKL:
    """A copy of `vae` whose encoder (and quant_conv) is fine-tuned for `steps` Adam steps on the reconstruction
    || D(mean E(x)) - x ||^2 of uint8 `images` (N, H, W, 3), the decoder frozen: the released decoder decides what a
    good latent is, and the attacker's own photos are the only data."""
    repaired = copy.deepcopy(vae)
    repaired.requires_grad_(False)
    trained = [*repaired.encoder.parameters(), *repaired.quant_conv.parameters()]
    for p in trained:
        p.requires_grad_(True)
    opt = torch.optim.Adam(trained, lr=lr)
    pixels = images_to_pixels(images).to(vae.device, vae.dtype)  # (N, 3, H, W)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        batch = pixels[torch.randint(len(pixels), (min(len(pixels), 8),), generator=gen)]
        mean = repaired.encode(batch).latent_dist.mean  # (B, c, h, w), unscaled
        loss = F.mse_loss(repaired.decode(mean).sample.float(), batch.float())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return repaired.requires_grad_(False).eval()


def invert_decoder(vae: AutoencoderKL, images: np.ndarray, steps: int, lr: float) -> torch.Tensor:
    """Scaled latents z (N, c, h, w) minimising || D(z) - x ||^2 for uint8 `images` (N, H, W, 3), found by Adam from
    z = 0 through the frozen decoder alone: the encoder is never called."""
    pixels = images_to_pixels(images).to(vae.device, vae.dtype)  # (N, 3, H, W)
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    shape = (len(images), vae.config.latent_channels, images.shape[1] // factor, images.shape[2] // factor)
    z = torch.zeros(shape, device=vae.device, dtype=vae.dtype, requires_grad=True)
    opt = torch.optim.Adam([z], lr=lr)
    requires = [p.requires_grad for p in vae.parameters()]
    vae.requires_grad_(False)
    try:
        for _ in range(steps):
            loss = F.mse_loss(_decode(vae, z).float(), pixels.float())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    finally:
        for p, r in zip(vae.parameters(), requires, strict=True):
            p.requires_grad_(r)
    return z.detach()


def purify(
    pipe: StableDiffusionPipeline, images: np.ndarray, class_noun: str, strength: float, seed: int = 0
) -> np.ndarray:
    """The photos through `pipe`'s img2img at `strength` under "a photo of a {class}" (uint8 in and out)."""
    return renoise_and_denoise(pipe, images, [f"a photo of a {class_noun}"] * len(images), strength, seed=seed)


def personalize(
    pipe: StableDiffusionPipeline,
    images: np.ndarray,
    class_noun: str,
    recipe: AttackRecipe,
    *,
    base_vae: AutoencoderKL | None = None,
    prior_images: np.ndarray | None = None,
    progress: Progress | None = None,
    class_images_fn: ClassImagesFn | None = None,
) -> StableDiffusionPipeline:
    """The attacker's recipe on the released `pipe`: its adaptive step, then DreamBooth on uint8 `images`; returns
    the pipeline the attacker generates with. `clean-vae` needs the public base model's VAE (`base_vae`).
    `progress` and `class_images_fn` go to `dreambooth`."""
    instance_latents = None
    if recipe.adaptive == "clean-vae":
        if base_vae is None:
            raise ValueError("the clean-vae attack needs the public base model's VAE (base_vae)")
        pipe = with_vae(pipe, base_vae)
    elif recipe.adaptive == "encoder-repair":
        pipe = with_vae(pipe, repair_encoder(pipe.vae, images, recipe.adaptive_steps, recipe.adaptive_lr, recipe.seed))
    elif recipe.adaptive == "decoder-inversion":
        instance_latents = invert_decoder(pipe.vae, images, recipe.adaptive_steps, recipe.adaptive_lr)
    elif recipe.adaptive == "purify":
        images = purify(pipe, images, class_noun, recipe.purify_strength, recipe.seed)
    return dreambooth(
        pipe,
        images,
        class_noun,
        recipe,
        prior_images=prior_images,
        progress=progress,
        instance_latents=instance_latents,
        class_images_fn=class_images_fn,
    )
