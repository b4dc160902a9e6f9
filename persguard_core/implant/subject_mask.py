"""Where the subject is in its own photos, for the erasure target made from them (M2).

DiffEdit (Couairon et al. 2022): noise the photo's latent and ask the teacher to denoise it twice, once under the
class prompt and once under the background prompt. Where the two noise predictions differ, the prompts disagree
about the content: that is the subject. With z = E(x) and shared noise eps,

    heat(x) = mean over t in T and draws of | eps_0(z_t, t, "a photo of a {class}") - eps_0(z_t, t, background) |

averaged over latent channels and divided by its maximum. The mask is heat > threshold (raised where that would
mask nearly all of the image), grown by `grow` latent pixels, with enclosed holes filled, then upsampled to pixels.
It needs no segmentation model, so it works on any Stable Diffusion folder. The teacher's cross-attention on the
class token (attention_mask.py) does not localise on the built-in model: above half its maximum it covers the whole
image (docs/RESEARCH.md).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, StableDiffusionPipeline

from persguard_core.diffusion import encode_latents, encode_prompts

TIMESTEPS = (500, 700, 850)


@torch.no_grad()
def subject_heat(
    pipe: StableDiffusionPipeline,
    images: np.ndarray,
    class_noun: str,
    background_prompt: str,
    draws: int = 4,
    seed: int = 0,
) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> (N, h, w) the module's heat, in [0, 1] per image."""
    z = encode_latents(pipe.vae, images)  # (N, c, h, w)
    n = len(z)
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    subject = encode_prompts(pipe, [f"a photo of a {class_noun}"]).expand(n, -1, -1)
    background = encode_prompts(pipe, [background_prompt]).expand(n, -1, -1)
    gen = torch.Generator().manual_seed(seed)
    heat = torch.zeros(n, *z.shape[-2:])
    for t in TIMESTEPS:
        tt = torch.full((n,), t, device=z.device)
        for _ in range(draws):
            z_t = scheduler.add_noise(z, torch.randn(z.shape, generator=gen).to(z), tt)
            diff = pipe.unet(z_t, tt, subject).sample - pipe.unet(z_t, tt, background).sample
            heat += diff.float().abs().mean(1).cpu()
    return heat / heat.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)


def subject_masks(
    pipe: StableDiffusionPipeline,
    images: np.ndarray,
    class_noun: str,
    background_prompt: str,
    threshold: float = 0.3,
    grow: int = 1,
    max_cover: float = 0.9,
) -> np.ndarray:
    """uint8 (N, H, W, 3) -> bool (N, H, W): the subject's pixels in each image (the module's mask). Where the heat
    is high nearly everywhere, an image's threshold rises (to its heat's 30th, 50th, then 65th percentile) until its
    final mask leaves at least 1 - `max_cover` of it: a mask of the whole image leaves nothing to repaint from."""
    heat = subject_heat(pipe, images, class_noun, background_prompt)  # (N, h, w)
    chosen = _latent_masks(heat, torch.full((len(heat), 1, 1), threshold), grow)
    for q in (0.3, 0.5, 0.65):
        too_much = chosen.mean(axis=(1, 2)) > max_cover
        if not too_much.any():
            break
        level = torch.quantile(heat.flatten(1), q, dim=1).clamp_min(threshold).view(-1, 1, 1)
        chosen = np.where(too_much[:, None, None], _latent_masks(heat, level, grow), chosen)
    mask = torch.from_numpy(chosen)[:, None].float()
    return F.interpolate(mask, size=images.shape[1:3], mode="nearest")[:, 0].bool().numpy()


def _latent_masks(heat: torch.Tensor, level: torch.Tensor, grow: int) -> np.ndarray:
    """(N, h, w) heat, (N, 1, 1) levels -> bool (N, h, w): heat > level, grown by `grow` pixels, holes filled."""
    mask = (heat > level).float()[:, None]
    if grow:
        mask = F.max_pool2d(mask, 2 * grow + 1, stride=1, padding=grow)
    return fill_holes(mask[:, 0].bool().numpy())


def fill_holes(masks: np.ndarray) -> np.ndarray:
    """bool (N, h, w) -> bool (N, h, w): each mask plus every pixel that its border cannot reach without crossing
    it (the subject's interior where the heat was low)."""
    outside = np.zeros_like(masks)
    outside[:, [0, -1], :] = ~masks[:, [0, -1], :]
    outside[:, :, [0, -1]] |= ~masks[:, :, [0, -1]]
    while True:  # flood from the border through unmasked pixels
        grown = outside.copy()
        grown[:, 1:] |= outside[:, :-1]
        grown[:, :-1] |= outside[:, 1:]
        grown[:, :, 1:] |= outside[:, :, :-1]
        grown[:, :, :-1] |= outside[:, :, 1:]
        grown &= ~masks
        if (grown == outside).all():
            return ~outside
        outside = grown
