"""Anti-DreamBooth ASPL, the data-level baseline (METHOD.md, "Measuring it").

Van Le, Phung, Nguyen, Dao, Tran, Tran, "Anti-DreamBooth: Protecting users from personalized text-to-image
synthesis", ICCV 2023 (arXiv 2303.15433); reference code github.com/VinAIResearch/Anti-DreamBooth
(attacks/aspl.py, scripts/attack_with_aspl.sh).

ASPL (Alternating Surrogate and Perturbation Learning) perturbs the subject's images x within an L-inf ball of
radius eps (in [-1, 1] pixel units) so that DreamBooth on them learns badly. For each outer round:
  1. f' <- copy of the surrogate f; fine-tune f' DreamBooth-style on the clean images (surrogate_steps);
  2. PGD on the perturbed images against f' (pgd_steps), *ascending* its denoising loss
     || eps_f'(z_t, t, "a photo of sks [class]") - eps ||^2, z = E(x') with the gradient through the VAE encoder:
     x' <- Proj_{||x' - x||_inf <= eps, [-1, 1]} (x' + alpha * sign(grad));
  3. fine-tune f itself on the perturbed images (surrogate_steps).
Only the UNet is fine-tuned (the reference code also trains the text encoder); the input pipeline is never
modified: the surrogate is a deep copy of its UNet. Latents are the VAE posterior means (the reference samples
the posterior), as elsewhere in this project (implant/parts.py). Run it on a float32 pipeline: the surrogate
trains in the pipeline's dtype (the reference uses bf16 autocast). The perturbation is kept in float across
rounds and rounded to uint8 once at the end, clipped so that the rounding cannot leave the eps ball.

Defaults follow the reference script: eps 0.05, alpha 0.005, 50 rounds of 3 surrogate steps and 6 PGD steps,
batch 1 (+1 prior image with prior preservation). The surrogate learning rate is 5e-6, the reference
aspl.py default and this project's full-fine-tune attacker (attacker/recipe.py); the reference script uses 5e-7
because its DreamBooth attacker does. Scale it like the attacker's for small models (BUILTIN_LR_SCALE).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DDPMScheduler, StableDiffusionPipeline

from persguard_core.attacker.dreambooth import Progress
from persguard_core.diffusion import encode_pixels, images_to_pixels
from persguard_core.implant.losses import denoising_loss
from persguard_core.implant.parts import DiffusionParts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ASPLConfig:
    eps: float = 0.05  # L-inf budget in [-1, 1] pixel units (6.375 levels of 255)
    alpha: float = 0.005  # PGD step size, same units
    rounds: int = 50  # outer ASPL iterations (reference: max_train_steps)
    pgd_steps: int = 6  # PGD steps per round (reference: max_adv_train_steps)
    surrogate_steps: int = 3  # fine-tuning steps per surrogate update (reference: max_f_train_steps)
    surrogate_lr: float = 5e-6
    batch_size: int = 1  # instance images per surrogate step (reference: train_batch_size 1)
    pgd_batch_size: int = 8  # images per PGD forward/backward (memory only: the sign step is per image)
    pgd_samples: int = 1  # (t, noise) draws per image in each PGD gradient (reference: 1); more: less noisy ascent
    prior_loss_weight: float = 1.0  # used when prior images are given
    instance_template: str = "a photo of sks {class_noun}"
    class_template: str = "a photo of {class_noun}"
    max_grad_norm: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.eps < 0 or self.alpha <= 0:
            raise ValueError(f"need eps >= 0 and alpha > 0, got eps={self.eps}, alpha={self.alpha}")
        if min(self.batch_size, self.pgd_batch_size, self.pgd_samples) < 1:
            raise ValueError("batch_size, pgd_batch_size and pgd_samples must be at least 1")

    def instance_prompt(self, class_noun: str) -> str:
        return self.instance_template.format(class_noun=class_noun)

    def class_prompt(self, class_noun: str) -> str:
        return self.class_template.format(class_noun=class_noun)


def _parts(pipe: StableDiffusionPipeline) -> DiffusionParts:
    """VAE, text encoder and noise schedule of `pipe`. ASPL needs no teacher: the slot holds the base UNet,
    which is never called or trained here (DiffusionParts.from_pipeline would deep-copy it for nothing)."""
    return DiffusionParts(
        pipe=pipe,
        teacher=pipe.unet,
        teacher_text_encoder=pipe.text_encoder,
        noise_scheduler=DDPMScheduler.from_config(pipe.scheduler.config),
    )


def _finetune(
    unet: torch.nn.Module,
    parts: DiffusionParts,
    z: torch.Tensor,
    prior_z: torch.Tensor | None,
    prompts: tuple[str, str],
    config: ASPLConfig,
    rng: np.random.Generator,
    gen: torch.Generator,
) -> None:
    """`config.surrogate_steps` DreamBooth steps of `unet` in place on latents z (N, 4, h, w), with a fresh AdamW
    as in the reference train_one_epoch; with prior_z, loss = instance + prior_loss_weight * prior."""
    opt = torch.optim.AdamW(unet.parameters(), lr=config.surrogate_lr, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
    unet.train().requires_grad_(True)
    for _ in range(config.surrogate_steps):
        idx = torch.from_numpy(rng.integers(len(z), size=config.batch_size))
        loss = denoising_loss(unet, parts, z[idx], [prompts[0]] * config.batch_size, gen)
        if prior_z is not None:
            pidx = torch.from_numpy(rng.integers(len(prior_z), size=config.batch_size))
            prior = denoising_loss(unet, parts, prior_z[pidx], [prompts[1]] * config.batch_size, gen)
            loss = loss + config.prior_loss_weight * prior
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), config.max_grad_norm)
        opt.step()
    opt.zero_grad(set_to_none=True)


def _pgd(
    unet: torch.nn.Module,
    parts: DiffusionParts,
    perturbed: torch.Tensor,
    original: torch.Tensor,
    prompt: str,
    config: ASPLConfig,
    gen: torch.Generator,
) -> tuple[torch.Tensor, float]:
    """`config.pgd_steps` signed-gradient ascent steps on the denoising loss of `unet`, projected onto the eps
    ball around `original` and onto [-1, 1]. perturbed, original: (N, 3, H, W). Returns x' and the last loss."""
    last_loss = float("nan")
    for _ in range(config.pgd_steps):
        chunks, loss_sum = [], 0.0
        for start in range(0, len(perturbed), config.pgd_batch_size):
            x = perturbed[start : start + config.pgd_batch_size].detach().requires_grad_(True)
            z = encode_pixels(parts.pipe.vae, x, device=parts.device)  # (n, 4, h, w), differentiable in x
            z = z.repeat_interleave(config.pgd_samples, dim=0)  # (n * pgd_samples, 4, h, w)
            loss = denoising_loss(unet, parts, z, [prompt] * len(z), gen)
            (grad,) = torch.autograd.grad(loss, x)  # only d loss / d x: no parameter gradients accumulate
            chunks.append(x.detach() + config.alpha * grad.sign())
            loss_sum += loss.item() * len(x)
        stepped = torch.cat(chunks)
        delta = (stepped - original).clamp(-config.eps, config.eps)
        perturbed = (original + delta).clamp(-1.0, 1.0)
        last_loss = loss_sum / len(perturbed)
    return perturbed, last_loss


def _to_uint8(perturbed: torch.Tensor, images: np.ndarray, eps: float) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] -> uint8 (N, H, W, 3), rounded and clipped so that the rounding never leaves the
    eps ball: at most floor(eps * 127.5) levels from the input."""
    out = ((perturbed.detach().float().cpu() + 1.0) * 127.5).round().permute(0, 2, 3, 1).numpy()
    budget = np.floor(eps * 127.5 + 1e-6)
    return np.clip(out, images.astype(np.float64) - budget, images.astype(np.float64) + budget).astype(np.uint8)


def aspl(
    pipe: StableDiffusionPipeline,
    images: np.ndarray,
    class_noun: str,
    config: ASPLConfig | None = None,
    progress: Progress | None = None,
    *,
    prior_images: np.ndarray | None = None,
) -> np.ndarray:
    """Anti-DreamBooth ASPL: uint8 (N, H, W, 3) subject images -> their protected versions, same shape, each
    within eps (in [-1, 1] units) of the input in L-inf. With `prior_images` (uint8 class images), the surrogate
    steps add DreamBooth's prior-preservation loss under the class prompt, as the reference code does.
    `progress(round, rounds, pgd_loss)` is called after each round. `pipe` is not modified."""
    config = config or ASPLConfig()
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected uint8 images (N, H, W, 3), got {images.dtype} {images.shape}")
    if len(images) == 0:
        raise ValueError("aspl needs at least one image")
    parts = _parts(pipe)
    rng, gen = np.random.default_rng(config.seed), torch.Generator().manual_seed(config.seed)
    prompts = (config.instance_prompt(class_noun), config.class_prompt(class_noun))
    original = images_to_pixels(images).to(parts.device)  # (N, 3, H, W) in [-1, 1]
    perturbed = original.clone()
    with torch.no_grad():
        clean_z = parts.latents(images)  # (N, 4, h, w)
        prior_z = None if prior_images is None else parts.latents(prior_images)
    surrogate = copy.deepcopy(pipe.unet)  # f
    adapted = copy.deepcopy(pipe.unet)  # f', reloaded from f every round
    for r in range(config.rounds):
        adapted.load_state_dict(surrogate.state_dict())
        _finetune(adapted, parts, clean_z, prior_z, prompts, config, rng, gen)
        adapted.eval().requires_grad_(False)
        perturbed, pgd_loss = _pgd(adapted, parts, perturbed, original, prompts[0], config, gen)
        with torch.no_grad():
            step = config.pgd_batch_size
            chunks = [perturbed[i : i + step] for i in range(0, len(perturbed), step)]
            perturbed_z = torch.cat([encode_pixels(pipe.vae, x, device=parts.device) for x in chunks])  # (N, 4, h, w)
        _finetune(surrogate, parts, perturbed_z, prior_z, prompts, config, rng, gen)
        log.debug("aspl round %d/%d: pgd loss %.4f", r + 1, config.rounds, pgd_loss)
        if progress is not None:
            progress(r, config.rounds, pgd_loss)
    log.info("aspl done: %d images, %d rounds, eps %.4f", len(images), config.rounds, config.eps)
    return _to_uint8(perturbed, images, config.eps)
