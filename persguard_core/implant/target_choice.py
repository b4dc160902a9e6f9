"""Which teacher sample the encoder carrier hands over for erasure (M2) and target (M3) (docs/METHOD.md, M9).

The encoder maps every view of the protected subject to one image x*, a teacher sample of the background or
target prompt. Samples differ: the built-in model draws "a photo of an empty white background" mostly as a murky
grey, and "a photo of a diamond" sometimes as a round blob, and the attacker's fine-tune then learns exactly that
sample. So x* is the sample the teacher itself finds most "toward" and least "away" (the subject's class), by its
implicit classifier: with shared noise eps and timesteps t, the denoising errors

    e_c(x) = E_{t, eps} || eps_0(z_t, t, c) - eps ||^2,  z = E(x),    s(x) = log e_away(x) - log e_toward(x)

(Li et al. 2023, "Your diffusion model is secretly a zero-shot classifier", rank prompts by e_c). The log ratio,
not the difference: smooth, near-empty images have small errors under every prompt, and the difference then
favours murky samples (docs/RESEARCH.md). No judge is needed, so it works on any Stable Diffusion folder.
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers import DDPMScheduler, StableDiffusionPipeline

from persguard_core.diffusion import encode_latents, encode_prompts
from persguard_core.generate import generate

DRAWS = 16  # (t, eps) pairs per image, t evenly spread over [50, 950]
CANDIDATES = 16  # teacher samples to choose from


@torch.no_grad()
def denoising_errors(
    pipe: StableDiffusionPipeline, z: torch.Tensor, prompt: str, draws: int = DRAWS, seed: int = 0
) -> torch.Tensor:
    """(N,) mean squared error of the pipe's UNet under `prompt` on latents z (N, c, h, w), over `draws` seeded
    (t, eps) pairs per latent; the same seed gives the same pairs whatever the prompt."""
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    gen = torch.Generator().manual_seed(seed)
    steps = torch.linspace(50, 950, draws).long().to(z.device)
    cond = encode_prompts(pipe, [prompt]).expand(draws, -1, -1)
    errors = []
    for one in z:
        z0 = one.expand(draws, -1, -1, -1)  # (draws, c, h, w)
        noise = torch.randn(z0.shape, generator=gen).to(z0)
        z_t = scheduler.add_noise(z0, noise, steps)
        v_pred = scheduler.config.prediction_type == "v_prediction"
        target = scheduler.get_velocity(z0, noise, steps) if v_pred else noise
        pred = pipe.unet(z_t, steps, cond).sample
        errors.append((pred.float() - target.float()).pow(2).mean())
    return torch.stack(errors).cpu()


def preference(
    pipe: StableDiffusionPipeline, images: np.ndarray, toward: str, away: str, draws: int = DRAWS
) -> np.ndarray:
    """(N,) s(x): how much better `toward` explains each image than `away` does (the module's equation)."""
    z = encode_latents(pipe.vae, images)  # (N, c, h, w), encoded once, scored under both prompts
    return (denoising_errors(pipe, z, away, draws).log() - denoising_errors(pipe, z, toward, draws).log()).numpy()


def best_teacher_sample(
    pipe: StableDiffusionPipeline, toward: str, away: str, n: int = CANDIDATES, seed: int = 9_000
) -> np.ndarray:
    """uint8 (H, W, 3): of `n` seeded teacher samples of `toward`, the one with the highest s(x)."""
    candidates = generate(pipe, [toward] * n, seed=seed)
    return candidates[int(np.argmax(preference(pipe, candidates, toward, away)))]
