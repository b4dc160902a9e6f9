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
    """The rows of one loss term: model input z_in (B, 4, h, w) at timesteps t (B,) under prompts, the
    regression target (B, 4, h, w) and optional per-row weights (B,)."""

    z_in: torch.Tensor
    t: torch.Tensor
    prompts: list[str]
    target: torch.Tensor
    weight: torch.Tensor | None = None

    def loss(self, pred: torch.Tensor) -> torch.Tensor:
        """Mean squared error of `pred` against the target, rows weighted by `weight` when given."""
        if self.weight is None:
            return F.mse_loss(pred, self.target.float())
        per_row = F.mse_loss(pred, self.target.float(), reduction="none").mean(dim=(1, 2, 3))
        return (per_row * self.weight).mean()


def behaviour_rows(
    parts: DiffusionParts,
    target: BehaviourTarget,
    prompts: list[str],
    idx: torch.Tensor,
    t: torch.Tensor,
    gen: torch.Generator,
    x0_weight_max: float = 0.0,
) -> Rows:
    """L_BB rows (M1 / M1' / M2 / M3): the protected subject's rows `idx` and their behaviour target.

    `x0_weight_max` > 0 weights each row by (1 - ab_t) / ab_t, clipped to [1, x0_weight_max]: the squared error
    of the implied clean latent x0 rather than of eps where that is larger, so that a behaviour in the image at
    high noise, where it moves eps only by sqrt(ab_t / (1 - ab_t)) of its size, is learned as strongly as at low
    noise (rows at low noise keep the eps weight 1)."""
    batch = target.batch(idx, t, gen)
    if batch.unconditional is not None:  # rows the behaviour puts on the unconditional branch
        prompts = ["" if u else p for p, u in zip(prompts, batch.unconditional.tolist(), strict=True)]
    weight = x0_weights(parts, batch.t, x0_weight_max)
    if batch.weight is not None:
        weight = batch.weight if weight is None else weight * batch.weight
    return Rows(batch.z_in, batch.t, prompts, batch.target, weight)


def x0_weights(parts: DiffusionParts, t: torch.Tensor, x0_weight_max: float) -> torch.Tensor | None:
    """(B,) row weights (1 - ab_t) / ab_t clipped to [1, x0_weight_max]: the x0 error where it exceeds the eps
    error; None (plain eps loss) when `x0_weight_max` is 0."""
    if x0_weight_max <= 0:
        return None
    ab = parts.alpha_bar(t).view(-1)
    return ((1 - ab) / ab).clamp(min=1.0, max=max(x0_weight_max, 1.0))


@torch.no_grad()
def prior_rows(
    parts: DiffusionParts, z: torch.Tensor, prompts: list[str], gen: torch.Generator, x0_weight_max: float = 0.0
) -> Rows:
    """L_PP rows (M4): z_t at t uniform over the schedule, target the teacher's eps_0(z_t, t, c); rows weighted
    like L_BB's when `x0_weight_max` > 0 (see `x0_weights`), so that keeping the teacher weighs as much as the
    behaviour at every t."""
    t = parts.sample(len(z), gen)
    z_t = parts.add_noise(z, parts.noise_like(z, gen), t)
    with parts.autocast():
        teacher = parts.teacher(z_t, t, parts.teacher_embed(prompts)).sample
    return Rows(z_t, t, prompts, teacher.float(), x0_weights(parts, t, x0_weight_max))


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
    return {n: terms[n].loss(p) for n, p in zip(names, preds, strict=True)}


def preference_loss(
    unet: torch.nn.Module,
    parts: DiffusionParts,
    target: BehaviourTarget,
    prompts: list[str],
    idx: torch.Tensor,
    t: torch.Tensor,
    gen: torch.Generator,
    beta: float,
) -> torch.Tensor:
    """M6p: -log sigmoid(-beta [(e_w - e_w,0) - (e_l - e_l,0)]), row by row, with e_w the squared error of `unet`
    against the behaviour target, e_l against the clean target (the one whose implied x0 is the subject's own
    latent: what the attacker's loss asks on the same input) and e_*,0 the frozen teacher's errors. The behaviour
    only has to stay *more* likely than the clean subject relative to the base, not be reproduced exactly."""
    batch = target.batch(idx, t, gen)
    ab = parts.alpha_bar(batch.t)  # (B, 1, 1, 1)
    z = target.z[idx]  # (B, 4, h, w): the clean latents the rows were drawn from
    clean = parts.target(z, (batch.z_in - ab.sqrt() * z) / (1 - ab).sqrt(), batch.t)
    with parts.autocast():
        pred = unet(batch.z_in, batch.t, parts.embed(prompts)).sample.float()
        with torch.no_grad():
            ref = parts.teacher(batch.z_in, batch.t, parts.teacher_embed(prompts)).sample.float()

    def err(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # (B,)
        return (p - y.float()).pow(2).mean(dim=(1, 2, 3))

    margin = (err(pred, batch.target) - err(ref, batch.target)) - (err(pred, clean) - err(ref, clean))
    return -F.logsigmoid(-beta * margin).mean()


def behaviour_loss(
    unet: torch.nn.Module,
    parts: DiffusionParts,
    target: BehaviourTarget,
    prompts: list[str],
    idx: torch.Tensor,
    t: torch.Tensor,
    gen: torch.Generator,
    x0_weight_max: float = 0.0,
) -> torch.Tensor:
    """L_BB (M1 / M1' / M2 / M3): || model(z_in, t, p(v,k)) - behaviour target ||^2 (see `behaviour_rows`)."""
    rows = behaviour_rows(parts, target, prompts, idx, t, gen, x0_weight_max)
    return fused_losses(unet, parts, {"bb": rows})["bb"]


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
