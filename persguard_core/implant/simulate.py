"""The simulated attacker of L_BR (M6) and L_REL (M7): a copy theta' of the UNet fine-tuned DreamBooth-style,
whose gradient is applied to theta first-order.

`unroll="full"` restarts theta' from theta every outer step and runs K attacker steps (M6 as written);
`unroll="amortized"` (Reptile style) runs one attacker step per outer step and restarts every K outer steps,
so the outer loop sees unrolls of length 1..K at the cost of one attacker step each.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch

from persguard_core.implant.losses import denoising_loss
from persguard_core.implant.parts import DiffusionParts


class SimulatedAttacker:
    def __init__(self, unet: torch.nn.Module, unroll_steps: int, learning_rate: float, mode: str = "amortized"):
        if mode not in ("full", "amortized"):
            raise ValueError(f"unroll mode must be 'full' or 'amortized', got {mode!r}")
        self.shadow = copy.deepcopy(unet).train().requires_grad_(True)
        self.unroll_steps, self.base_lr, self.mode = unroll_steps, learning_rate, mode
        self.done = unroll_steps  # forces a restart on first use
        self.opt: torch.optim.Optimizer | None = None

    def restart(self, unet: torch.nn.Module, rng: np.random.Generator) -> None:
        """theta' <- theta, with a fresh attacker optimizer and a learning rate drawn within 2x of the base."""
        self.shadow.load_state_dict(unet.state_dict())
        lr = self.base_lr * math.exp(rng.uniform(-math.log(2), math.log(2)))
        self.opt = torch.optim.AdamW(self.shadow.parameters(), lr=lr, weight_decay=1e-2)
        self.done = 0

    def attack_step(self, parts: DiffusionParts, z: torch.Tensor, prompts: list[str], gen: torch.Generator) -> float:
        """One DreamBooth step of theta' on latents z under `prompts` (instance rows, optionally prior rows)."""
        loss = denoising_loss(self.shadow, parts, z, prompts, gen)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.shadow.parameters(), 1.0)
        self.opt.step()
        self.done += 1
        return loss.item()

    def add_gradient_to(self, params: dict[str, torch.nn.Parameter], weight: float) -> None:
        """First-order transfer: theta.grad += weight * dL/dtheta' for theta's trainable parameters."""
        shadow = dict(self.shadow.named_parameters())
        for name, p in params.items():
            g = shadow[name].grad
            if g is None:
                continue
            p.grad = weight * g if p.grad is None else p.grad + weight * g
        self.opt.zero_grad(set_to_none=True)
