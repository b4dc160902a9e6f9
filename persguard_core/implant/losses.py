"""The loss terms of the unified objective (METHOD.md, M1-M8), each on a batch of rows.

Every term is a mean squared error between the model's prediction on some rows and a regression target. The
rows of several terms can go through the UNet in one forward pass (`fused_losses`): the implant loop computes
L_BB, L_PP and L_BR-mirror on theta together, which is one larger batch instead of three small ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from persguard_core.implant.behaviours import BehaviourTarget
from persguard_core.implant.parts import DiffusionParts


@dataclass
class Rows:
    """The rows of one loss term: model input z_in (B, 4, h, w) at timesteps t (B,) under prompts, and the
    regression target (B, 4, h, w)."""

    z_in: torch.Tensor
    t: torch.Tensor
    prompts: list[str]
    target: torch.Tensor


def behaviour_rows(
    parts: DiffusionParts,
    target: BehaviourTarget,
    prompts: list[str],
    idx: torch.Tensor,
    t: torch.Tensor,
    gen: torch.Generator,
) -> Rows:
    """L_BB rows (M1 / M1' / M2 / M3): the protected subject's rows `idx` and their behaviour target."""
    batch = target.batch(idx, t, gen)
    return Rows(batch.z_in, batch.t, prompts, batch.target)


@torch.no_grad()
def prior_rows(parts: DiffusionParts, z: torch.Tensor, prompts: list[str], gen: torch.Generator) -> Rows:
    """L_PP rows (M4): z_t at t uniform over the schedule, target the teacher's eps_0(z_t, t, c)."""
    t = parts.sample(len(z), gen)
    z_t = parts.add_noise(z, parts.noise_like(z, gen), t)
    with parts.autocast():
        teacher = parts.teacher(z_t, t, parts.teacher_embed(prompts)).sample
    return Rows(z_t, t, prompts, teacher.float())


def denoising_rows(
    parts: DiffusionParts, z: torch.Tensor, prompts: list[str], gen: torch.Generator, t: torch.Tensor | None = None
) -> Rows:
    """DreamBooth rows: z_t of clean z, target eps (or v): L_BR mirror (M5), L_REL (M7), attacker steps."""
    t = parts.sample(len(z), gen) if t is None else t
    noise = parts.noise_like(z, gen)
    return Rows(parts.add_noise(z, noise, t), t, prompts, parts.target(z, noise, t))


def fused_losses(unet: torch.nn.Module, parts: DiffusionParts, terms: dict[str, Rows]) -> dict[str, torch.Tensor]:
    """One forward pass of `unet` over the rows of every term; the mean squared error of each term."""
    names = list(terms)
    z_in = torch.cat([terms[n].z_in for n in names])
    t = torch.cat([terms[n].t for n in names])
    prompts = [p for n in names for p in terms[n].prompts]
    with parts.autocast():
        pred = unet(z_in, t, parts.embed(prompts)).sample.float()
    preds = pred.split([len(terms[n].t) for n in names])
    return {n: F.mse_loss(p, terms[n].target.float()) for n, p in zip(names, preds, strict=True)}


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
    return fused_losses(unet, parts, {"bb": behaviour_rows(parts, target, prompts, idx, t, gen)})["bb"]


def prior_loss(
    unet: torch.nn.Module, parts: DiffusionParts, z: torch.Tensor, prompts: list[str], gen: torch.Generator
) -> torch.Tensor:
    """L_PP (M4): || eps_theta(z_t, t, c) - eps_0(z_t, t, c) ||^2 with t uniform over the schedule."""
    return fused_losses(unet, parts, {"pp": prior_rows(parts, z, prompts, gen)})["pp"]


def denoising_loss(
    unet: torch.nn.Module,
    parts: DiffusionParts,
    z: torch.Tensor,
    prompts: list[str],
    gen: torch.Generator,
    t: torch.Tensor | None = None,
) -> torch.Tensor:
    """The DreamBooth loss || eps_theta(z_t, t, p) - eps ||^2: L_BR mirror (M5), L_REL (M7), attacker steps."""
    return fused_losses(unet, parts, {"dn": denoising_rows(parts, z, prompts, gen, t)})["dn"]
