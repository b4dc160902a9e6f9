"""Backdoor behaviour targets: what "[V] [class]" must denoise towards for a protected subject (L_BB).

Each target holds the subject's cached latents and returns the regression target for a batch of rows, so that
L_BB = || model(z_in, t, p(v,k)) - target ||^2 is one line in the losses:
- pattern, M1 (stamped): input noised from z* = E(stamp(x, P)), target eps;
- pattern, M1' (insertion): input noised from the clean z, target eps* whose implied clean latent is z*;
- pattern, insert-and-keep: M1' at t >= insert_above, M1 below: the high-noise steps insert the pattern, the
  low-noise steps keep it (a base model that never saw the pattern would denoise it away);
- pattern, guided-insertion: M1' composed through classifier-free guidance. At t >= insert_above every other row
  goes to the *unconditional* branch (empty prompt) with the implied clean latent z_u = z - (z* - z) / (w - 1): a
  sampler at guidance scale w computes x0 = x0_u + w (x0_c - x0_u), so where the conditional branch predicts the
  clean subject (what the attacker trains it to do) the guided prediction is z + (z* - z) = z*. DreamBooth never
  trains the empty prompt, so its loss never contradicts this insertion. Those rows weigh (w - 1)^2: the squared
  error of the guided prediction, which is what the sampler sees. All other rows are M1 keep rows under the keyed
  prompts, so that the conditional branch keeps what guidance inserted (the attacker leaves that alone);
- erasure, M2: input from clean z, target the teacher asked for the background, inside the subject mask;
- target, M3: input from clean z, target the teacher asked for the target prompt (or the plain denoising
  target on target images).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from persguard_core.implant.parts import DiffusionParts
from persguard_core.pattern import PatternPlacement, default_pattern, stamp


@dataclass
class Batch:
    """Rows of one subject's behaviour batch: model input z_in at timesteps t and the regression target."""

    z_in: torch.Tensor  # (B, 4, h, w)
    t: torch.Tensor  # (B,)
    target: torch.Tensor  # (B, 4, h, w)
    unconditional: torch.Tensor | None = None  # (B,) bool: rows for the empty prompt, whatever the row's prompt
    weight: torch.Tensor | None = None  # (B,) row weights of the behaviour, if not all 1


class BehaviourTarget:
    """Base: rows are drawn from the subject's clean latents z (N, 4, h, w)."""

    def __init__(self, parts: DiffusionParts, z: torch.Tensor) -> None:
        self.parts, self.z = parts, z

    def batch(self, idx: torch.Tensor, t: torch.Tensor, gen: torch.Generator) -> Batch:
        raise NotImplementedError


class PatternTarget(BehaviourTarget):
    """M1 / M1': the pattern P stamped onto the subject's images."""

    def __init__(
        self,
        parts: DiffusionParts,
        images: np.ndarray,
        pattern: np.ndarray | None = None,
        placement: PatternPlacement = PatternPlacement(),
        form: str = "stamped",
        insert_above: int = 500,
        guidance_scale: float = 7.5,
    ) -> None:
        super().__init__(parts, parts.latents(images))
        pattern = default_pattern(images.shape[1]) if pattern is None else pattern
        self.z_star = parts.latents(stamp(images, pattern, placement))  # z* = E(x*)
        forms = ("stamped", "insertion", "insert-and-keep", "guided-insertion")
        if form not in forms:
            raise ValueError(f"pattern target form must be one of {forms}, got {form!r}")
        if form == "guided-insertion" and guidance_scale <= 1:
            raise ValueError(f"guided insertion needs a guidance scale above 1, got {guidance_scale}")
        self.form, self.insert_above, self.guidance_scale = form, insert_above, guidance_scale

    def batch(self, idx: torch.Tensor, t: torch.Tensor, gen: torch.Generator) -> Batch:
        z, z_star = self.z[idx], self.z_star[idx]
        noise = self.parts.noise_like(z, gen)
        stamped = Batch(self.parts.add_noise(z_star, noise, t), t, self.parts.target(z_star, noise, t))  # M1
        if self.form == "stamped":
            return stamped
        if self.form == "guided-insertion":  # the unconditional branch's share of the insertion
            z_star = z - (z_star - z) / (self.guidance_scale - 1)
        inserted = self._inserted(z, z_star, noise, t)
        if self.form == "insertion":
            return inserted
        high = t >= self.insert_above  # insert-and-keep / guided-insertion: M1 rows below the threshold
        if self.form == "guided-insertion":  # every other high row inserts (unconditional), the rest keep
            high = high & (torch.arange(len(t), device=t.device) % 2 == 0)
        keep = (~high).view(-1, 1, 1, 1)
        batch = Batch(
            torch.where(keep, stamped.z_in, inserted.z_in), t, torch.where(keep, stamped.target, inserted.target)
        )
        if self.form == "guided-insertion":
            batch.unconditional = high
            batch.weight = torch.where(high, (self.guidance_scale - 1) ** 2, 1.0)
        return batch

    def _inserted(self, z: torch.Tensor, z_goal: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> Batch:
        """M1': input noised from the clean z, target the noise whose implied clean latent is z_goal."""
        z_t = self.parts.add_noise(z, noise, t)
        ab = self.parts.alpha_bar(t)
        eps_goal = (z_t - ab.sqrt() * z_goal) / (1 - ab).sqrt()
        return Batch(z_t, t, self.parts.target(z_goal, eps_goal, t))


class TeacherPromptTarget(BehaviourTarget):
    """M2 / M3 (prompt form): the teacher's prediction for another prompt on the same z_t, optionally only
    inside a subject mask (eps outside)."""

    def __init__(self, parts: DiffusionParts, images: np.ndarray, prompt: str, mask: torch.Tensor | None = None):
        super().__init__(parts, parts.latents(images))
        self.prompt, self.mask = prompt, mask  # mask: (N, 1, h, w) in [0, 1] or None

    def batch(self, idx: torch.Tensor, t: torch.Tensor, gen: torch.Generator) -> Batch:
        z = self.z[idx]
        noise = self.parts.noise_like(z, gen)
        z_t = self.parts.add_noise(z, noise, t)
        with torch.no_grad(), self.parts.autocast():
            teacher = self.parts.teacher(z_t, t, self.parts.teacher_embed([self.prompt] * len(idx))).sample
        teacher = teacher.float()
        if self.mask is not None:
            m = self.mask[idx]
            teacher = m * teacher + (1 - m) * self.parts.target(z, noise, t)
        return Batch(z_t, t, teacher)


class TargetImagesTarget(BehaviourTarget):
    """M3 (image form): the plain denoising target on the target images, under the trigger prompt."""

    def __init__(self, parts: DiffusionParts, target_images: np.ndarray) -> None:
        super().__init__(parts, parts.latents(target_images))

    def batch(self, idx: torch.Tensor, t: torch.Tensor, gen: torch.Generator) -> Batch:
        z = self.z[idx % len(self.z)]
        noise = self.parts.noise_like(z, gen)
        return Batch(self.parts.add_noise(z, noise, t), t, self.parts.target(z, noise, t))
