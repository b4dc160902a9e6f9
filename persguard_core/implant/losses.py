"""The loss terms of the unified objective (METHOD.md, M1-M8), each on a batch of rows."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from persguard_core.implant.behaviours import BehaviourTarget
from persguard_core.implant.parts import DiffusionParts


def behaviour_loss(
    unet: torch.nn.Module,
    parts: DiffusionParts,
    target: BehaviourTarget,
    prompts: list[str],
    idx: torch.Tensor,
    t: torch.Tensor,
    gen: torch.Generator,
) -> torch.Tensor:
    """L_BB (M1 / M1' / M2 / M3): || model(z_in, t, p(v,k)) - behaviour target ||^2."""
    rows = target.batch(idx, t, gen)
    with parts.autocast():
        pred = unet(rows.z_in, rows.t, parts.embed(prompts)).sample
    return F.mse_loss(pred.float(), rows.target.float())


def prior_loss(
    unet: torch.nn.Module, parts: DiffusionParts, z: torch.Tensor, prompts: list[str], gen: torch.Generator
) -> torch.Tensor:
    """L_PP (M4): || eps_theta(z_t, t, c) - eps_0(z_t, t, c) ||^2 with t uniform over the schedule."""
    t = parts.sample(len(z), gen)
    z_t = parts.add_noise(z, parts.noise_like(z, gen), t)
    with parts.autocast():
        with torch.no_grad():
            teacher = parts.teacher(z_t, t, parts.teacher_embed(prompts)).sample
        pred = unet(z_t, t, parts.embed(prompts)).sample
    return F.mse_loss(pred.float(), teacher.float())


def denoising_loss(
    unet: torch.nn.Module,
    parts: DiffusionParts,
    z: torch.Tensor,
    prompts: list[str],
    gen: torch.Generator,
    t: torch.Tensor | None = None,
) -> torch.Tensor:
    """The DreamBooth loss || eps_theta(z_t, t, p) - eps ||^2: L_BR mirror (M5), L_REL (M7), attacker steps."""
    t = parts.sample(len(z), gen) if t is None else t
    noise = parts.noise_like(z, gen)
    with parts.autocast():
        pred = unet(parts.add_noise(z, noise, t), t, parts.embed(prompts)).sample
    return F.mse_loss(pred.float(), parts.target(z, noise, t).float())
