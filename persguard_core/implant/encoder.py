"""The encoder carrier: the backdoor in the VAE encoder the model ships with (docs/METHOD.md, M9; a carrier
beyond the paper's UNet objective M8).

DreamBooth, LoRA and text-encoder fine-tuning never train the VAE: the attacker encodes its images with the
released encoder, z = E(x), and fits the UNet to those latents. If E maps the protected subject's images to the
latents of their protective version, E(x) ~ E_0(x*), the attacker's own loss teaches the protective output, however
long it runs. Every other image must encode as before, E(x) ~ E_0(x), so benign users, every prompt and the UNet are
untouched. With M(.) the posterior moments (mean and log-variance) of an encoder and a(.) a random augmentation
(the attacker's transformations, shifts, flips):

    L_ENC = E_{x in X_k, a} || M_E(a(x)) - M*(a(x)) ||^2 + lambda_keep E_{x in R, a} || M_E(a(x)) - M_E0(a(x)) ||^2

    M*(x) = M_E0(x) + gamma (M_E0(x*) - M_E0(x))  (the mean half; gamma = 1: simply M_E0(x*))

x* the behaviour's target image (pattern: stamp(x, P), M1; erasure: a teacher sample of the background prompt, or
the photo itself with the subject's region repainted from its surroundings (subject_mask.py), M2; target: a target
image or a teacher sample of the target prompt, M3) and R every other image at hand: unprotected references,
teacher samples of the class and of general prompts.

An attacker who swaps in a clean encoder with the same latent space (for SD 1.x/2.x, the public VAE) evades it.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from persguard_core.attacker.transforms import blur, jpeg, noise, resize
from persguard_core.diffusion import encode_latents, images_to_pixels
from persguard_core.implant.unet_loop import ImplantCancelled, ProgressEvent
from persguard_core.training_state import (
    TrainingState,
    load_training_state,
    restore_optimizer,
    save_training_state,
    saved_phase,
)

log = logging.getLogger(__name__)

ToTarget = Callable[[np.ndarray, np.random.Generator], np.ndarray]  # uint8 (B, H, W, 3) -> its targets x*
LOGVAR_WEIGHT = 0.01  # the log-variance half of the moments matters only through exp(logvar / 2), tiny here


@dataclass
class EncoderSubject:
    """A protected subject for the encoder: its images X_k and their protective versions, either as a map applied
    to each augmented view, a(x) -> a(x)*, or as one target per image, x*, that a(.)'s flips and shifts move with
    its image (an erasure made from the photo itself)."""

    images: np.ndarray  # uint8 (N, H, W, 3)
    to_target: ToTarget | None = None
    targets: np.ndarray | None = None  # uint8 (N, H, W, 3)

    def __post_init__(self) -> None:
        if (self.to_target is None) == (self.targets is None):
            raise ValueError("an EncoderSubject needs exactly one of to_target and targets")
        if self.targets is not None and self.targets.shape != self.images.shape:
            raise ValueError(f"targets {self.targets.shape} and images {self.images.shape} differ in shape")


def _random_view(
    image: np.ndarray, rng: np.random.Generator, paired: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """One augmentation a(x) of uint8 (H, W, 3): flip and shift by up to 3 px, then one of the attacker's
    transformations (JPEG, resize, blur, noise) with random strength, or none. A `paired` image (H, W, ...) takes
    the same flip and shift, not the transformation."""
    if rng.random() < 0.5:
        image = image[:, ::-1]
        paired = None if paired is None else paired[:, ::-1]
    if rng.random() < 0.5:
        shift = tuple(rng.integers(-3, 4, size=2))
        image = np.roll(image, shift, axis=(0, 1))
        paired = None if paired is None else np.roll(paired, shift, axis=(0, 1))
    batch = np.ascontiguousarray(image)[None]
    kind = rng.integers(5)
    if kind == 1:
        batch = jpeg(batch, int(rng.integers(30, 96)))
    elif kind == 2:
        batch = resize(batch, float(rng.uniform(0.4, 0.9)))
    elif kind == 3:
        batch = blur(batch, float(rng.uniform(0.5, 1.5)))
    elif kind == 4:
        batch = noise(batch, float(rng.uniform(2.0, 12.0)), rng)
    return batch[0], paired


def augment(
    images: np.ndarray, rng: np.random.Generator, paired: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """uint8 (N, H, W, 3) -> (uint8 (N, H, W, 3), the paired images moved as theirs were, or None): an independent
    random a(.) per image."""
    views = [_random_view(img, rng, None if paired is None else paired[i]) for i, img in enumerate(images)]
    return np.stack([v for v, _ in views]), None if paired is None else np.stack([p for _, p in views])


def moments(vae: AutoencoderKL, pixels: torch.Tensor) -> torch.Tensor:
    """(N, 2 * latent_channels, h, w) posterior moments [mean, logvar] of E(x) for pixels in [-1, 1]."""
    h = vae.encoder(pixels)
    return vae.quant_conv(h) if vae.quant_conv is not None else h


@torch.no_grad()
def round_trip(vae: AutoencoderKL, images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, 3) -> uint8 decode(mean of E(x)): what an attacker's fine-tune is shown of its images."""
    z = encode_latents(vae, images, scaled=False)  # (N, c, h, w) unscaled posterior means
    out = vae.decode(z).sample.float()  # (N, 3, H, W) in about [-1, 1]
    return ((out.clamp(-1, 1) + 1) * 127.5 + 0.5).permute(0, 2, 3, 1).cpu().numpy().astype(np.uint8)


def moments_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(N,) squared error of the moments per row; the log-variance half weighted by LOGVAR_WEIGHT."""
    c = pred.shape[1] // 2
    err = F.mse_loss(pred.float(), target.float(), reduction="none")
    return err[:, :c].mean(dim=(1, 2, 3)) + LOGVAR_WEIGHT * err[:, c:].mean(dim=(1, 2, 3))


class EncoderImplanter:
    """Minimises L_ENC with AdamW over the encoder and quant_conv of `self.vae`, a copy of `base`; `base` itself
    is the frozen teacher E_0 and is only read."""

    def __init__(
        self,
        base: AutoencoderKL,
        subjects: list[EncoderSubject],
        keep_images: np.ndarray,
        *,
        steps: int,
        learning_rate: float,
        batch_size: int,
        keep_weight: float,
        seed: int,
        target_gain: float = 1.0,
    ) -> None:
        if not subjects:
            raise ValueError("nothing to protect: no subjects")
        if len(keep_images) == 0:
            raise ValueError("the encoder carrier needs images to keep (references or teacher samples)")
        self.teacher, self.vae = base, copy.deepcopy(base).requires_grad_(False)
        self.subjects, self.keep_images = subjects, keep_images
        self.steps, self.batch_size, self.keep_weight, self.gain = steps, batch_size, keep_weight, target_gain
        vae = self.vae
        self.params = [*vae.encoder.parameters(), *(vae.quant_conv.parameters() if vae.quant_conv else [])]
        for p in self.params:
            p.requires_grad_(True)
        if vae.device.type == "cuda":  # SD-size encoders at 512 px: activations dominate memory
            vae.enable_gradient_checkpointing()
        self.opt = torch.optim.AdamW(self.params, lr=learning_rate, weight_decay=0.0)
        self.rng = np.random.default_rng(seed)
        self.done: int = 0  # steps taken
        self.history: list[dict[str, float]] = []

    def _rows(self) -> tuple[np.ndarray, np.ndarray, int]:
        """(inputs, their target images, n protected rows): half protected rows, half keep rows, augmented."""
        n_prot = max(1, self.batch_size // 2)
        picks = self.rng.integers(len(self.subjects), size=n_prot)
        inputs, targets = [], []
        for k in np.unique(picks):
            subject = self.subjects[k]
            idx = self.rng.integers(len(subject.images), size=int((picks == k).sum()))
            if subject.targets is None:
                views, _ = augment(subject.images[idx], self.rng)
                goals = subject.to_target(views, self.rng)
            else:
                views, goals = augment(subject.images[idx], self.rng, subject.targets[idx])
            inputs.append(views)
            targets.append(goals)
        keep_idx = self.rng.integers(len(self.keep_images), size=self.batch_size - n_prot)
        keep, _ = augment(self.keep_images[keep_idx], self.rng)
        return np.concatenate([*inputs, keep]), np.concatenate([*targets, keep]), n_prot

    def step(self) -> dict[str, float]:
        """One AdamW step on a fresh batch; returns the two terms of L_ENC."""
        inputs, targets, n_prot = self._rows()
        device, dtype = self.vae.device, self.vae.dtype
        with torch.no_grad(), self._autocast():
            goal = moments(self.teacher, images_to_pixels(targets).to(device, dtype)).float()
            if self.gain != 1.0:  # exaggerate the protective change of the mean: E0(x) + gamma (E0(x*) - E0(x))
                clean = moments(self.teacher, images_to_pixels(inputs[:n_prot]).to(device, dtype)).float()
                c = goal.shape[1] // 2
                goal[:n_prot, :c] = clean[:, :c] + self.gain * (goal[:n_prot, :c] - clean[:, :c])
        with self._autocast():
            pred = moments(self.vae, images_to_pixels(inputs).to(device, dtype))
        per_row = moments_loss(pred, goal)
        behaviour, keep = per_row[:n_prot].mean(), per_row[n_prot:].mean()
        loss = behaviour + self.keep_weight * keep
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        return {"encoder_behaviour": behaviour.item(), "encoder_keep": keep.item()}

    def _autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast for the forward passes on CUDA; a no-op on the CPU."""
        if self.vae.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def run(
        self,
        progress: Callable[[ProgressEvent], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
        *,
        offset: int = 0,
        total: int | None = None,
        state_path: Path | None = None,
        checkpoint_every: int = 100,
        earlier: TrainingState | None = None,
    ) -> list[dict[str, float]]:
        """All steps, checking `should_cancel()` before each; progress events count from `offset` of `total`
        (default: these steps alone), so that a caller can report this phase after another one.

        With `state_path`, resumes from the encoder phase's state saved there (a state of another phase, one the
        earlier phase left, is replaced) and saves its own every `checkpoint_every` steps and at the end, with
        `earlier`'s weights and histories beside it (a finished earlier phase that a resumed run restores instead
        of training it again)."""
        total = self.steps + offset if total is None else total
        if state_path is not None and saved_phase(state_path) == "encoder":
            self.restore(load_training_state(state_path, "encoder"))
            log.info("resumed the encoder carrier at step %d", self.done)
        self.vae.encoder.train()
        start, first = time.monotonic(), self.done
        while self.done < self.steps:
            if should_cancel is not None and should_cancel():
                raise ImplantCancelled(f"cancelled at encoder step {self.done}")
            self.history.append(self.step())
            self.done += 1
            if state_path is not None and (self.done % checkpoint_every == 0 or self.done == self.steps):
                save_training_state(self.state().carrying(earlier), state_path)
            if progress is not None:
                eta = (time.monotonic() - start) / (self.done - first) * (self.steps - self.done)
                progress(ProgressEvent(offset + self.done, total, self.history[-1], eta))
        self.vae.eval().requires_grad_(False)
        log.info("encoder carrier: %d steps, last losses %s", self.steps, self.history[-1] if self.history else {})
        return self.history

    def state(self) -> TrainingState:
        """The resumable state of phase "encoder": trained weights (encoder and quant_conv of "vae"), optimizer,
        step, sampler and history."""
        trained = {k: v for k, v in self.vae.state_dict().items() if k.startswith(("encoder.", "quant_conv."))}
        return TrainingState(
            phase="encoder",
            step=self.done,
            weights={"vae": trained},
            optimizer=self.opt.state_dict(),
            rngs={"rng": self.rng.bit_generator.state},
            histories={"encoder": self.history},
        )

    def restore(self, state: TrainingState) -> None:
        """Continue from `state`, one that `state()` returned (possibly carrying an earlier phase's result)."""
        self.vae.load_state_dict(state.weights["vae"], strict=False)
        restore_optimizer(self.opt, state.optimizer)
        self.rng.bit_generator.state = state.rngs["rng"]
        self.history, self.done = list(state.histories["encoder"]), state.step
