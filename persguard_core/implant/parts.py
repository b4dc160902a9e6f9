"""The fixed parts around the trainable UNet during implantation: VAE, text encoder, noise schedule and the
frozen teacher eps_0 (METHOD.md, Notation)."""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field

import numpy as np
import torch
from diffusers import DDPMScheduler, StableDiffusionPipeline

from persguard_core import model_io
from persguard_core.diffusion import encode_latents, encode_prompts


@dataclass
class DiffusionParts:
    pipe: StableDiffusionPipeline  # holds the trainable UNet (pipe.unet) and the text encoder
    teacher: torch.nn.Module  # eps_0: frozen copy of the base UNet
    teacher_text_encoder: torch.nn.Module  # frozen copy of the base text encoder (conditions eps_0)
    noise_scheduler: DDPMScheduler
    text_trainable: bool = False
    _prompt_cache: dict[str, torch.Tensor] = field(default_factory=dict)

    @classmethod
    def from_pipeline(cls, pipe: StableDiffusionPipeline, text_trainable: bool = False) -> DiffusionParts:
        teacher = copy.deepcopy(pipe.unet).eval().requires_grad_(False)
        teacher_text = pipe.text_encoder
        if text_trainable:
            teacher_text = copy.deepcopy(pipe.text_encoder).eval().requires_grad_(False)
        pipe.vae.requires_grad_(False)
        noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        return cls(pipe, teacher, teacher_text, noise_scheduler, text_trainable)

    @classmethod
    def from_base(cls, base: StableDiffusionPipeline, text_trainable: bool = False) -> DiffusionParts:
        """Parts that train copies of `base`'s trainable modules (`model_io.trainable_copy`) and use `base`'s own
        UNet and text encoder as the frozen teacher: `base` is read, never trained, so it can serve run after
        run. Costs what `from_pipeline` costs (one UNet copy) without modifying its argument."""
        pipe = model_io.trainable_copy(base, text_encoder=text_trainable)
        teacher = base.unet.eval().requires_grad_(False)
        teacher_text = base.text_encoder.eval().requires_grad_(False)
        pipe.vae.requires_grad_(False)
        noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        return cls(pipe, teacher, teacher_text, noise_scheduler, text_trainable)

    @property
    def device(self) -> torch.device:
        return self.pipe.unet.device

    @torch.no_grad()
    def latents(self, images: np.ndarray, batch: int = 64) -> torch.Tensor:
        """z = E(x): uint8 (N, H, W, 3) -> (N, 4, h, w) scaled posterior means (deterministic, cacheable)."""
        return encode_latents(self.pipe.vae, images, batch=batch, device=self.device)

    def embed(self, prompts: list[str]) -> torch.Tensor:
        """(N, L, D) conditioning of the model being trained (live when the text encoder trains)."""
        if self.text_trainable:
            return encode_prompts(self.pipe, prompts, self.pipe.text_encoder)
        return self.teacher_embed(prompts)

    def teacher_embed(self, prompts: list[str]) -> torch.Tensor:
        """(N, L, D) conditioning of the teacher eps_0 by the base text encoder; cached per prompt."""
        missing = [p for p in dict.fromkeys(prompts) if p not in self._prompt_cache]
        if missing:
            with torch.no_grad():
                for p, e in zip(missing, encode_prompts(self.pipe, missing, self.teacher_text_encoder), strict=True):
                    self._prompt_cache[p] = e
        return torch.stack([self._prompt_cache[p] for p in prompts])

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast for forward passes on CUDA; a no-op on the CPU."""
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        """(N, 1, 1, 1) cumulative alpha at timesteps t."""
        return self.noise_scheduler.alphas_cumprod.to(self.device)[t].view(-1, 1, 1, 1)

    def add_noise(self, z: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """z_t = sqrt(ab_t) z + sqrt(1 - ab_t) eps."""
        ab = self.alpha_bar(t)
        return ab.sqrt() * z + (1 - ab).sqrt() * noise

    def target(self, z: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The regression target of the model's parameterization for clean z and noise (eps or v)."""
        if self.noise_scheduler.config.prediction_type == "v_prediction":
            ab = self.alpha_bar(t)
            return ab.sqrt() * noise - (1 - ab).sqrt() * z
        return noise

    def sample(self, n: int, gen: torch.Generator, lo: int = 0, hi: int | None = None) -> torch.Tensor:
        """Timesteps t ~ U[lo, hi) (N,) and noise generator for n rows."""
        hi = self.noise_scheduler.config.num_train_timesteps if hi is None else hi
        return torch.randint(lo, hi, (n,), generator=gen).to(self.device)

    def noise_like(self, z: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return torch.randn(z.shape, generator=gen).to(z)
