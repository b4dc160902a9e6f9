"""Augmentations that make the judge robust to what generated images look like: blur, noise, patterns."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from persguard_core.pattern import PatternPlacement, default_pattern, stamp

_CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")


def random_pattern_stamps(images: np.ndarray, rng: np.random.Generator, share: float) -> np.ndarray:
    """Stamp a 3 x 3 checker marker (random corner and opacity) onto a share of uint8 images: the marker the
    shipped judge was trained with (the project's first default pattern), kept so that its figures reproduce."""
    out = images.copy()
    pattern = default_pattern(images.shape[1], cells=3)
    for i in np.flatnonzero(rng.random(len(images)) < share):
        place = PatternPlacement(position=_CORNERS[rng.integers(4)], opacity=float(rng.uniform(0.6, 1.0)))
        out[i] = stamp(images[i], pattern, place)
    return out


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W)."""
    if sigma <= 0:
        return x
    radius = max(1, int(round(2.5 * sigma)))
    k = torch.exp(-(torch.arange(-radius, radius + 1, dtype=x.dtype) ** 2) / (2 * sigma**2))
    k = (k / k.sum()).view(1, 1, 1, -1).repeat(x.shape[1], 1, 1, 1)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), k, groups=x.shape[1])
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), k.transpose(2, 3), groups=x.shape[1])


def degrade(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Per-image random blur (sigma 0-1), noise (0-0.06) and brightness/contrast jitter on [-1, 1] images."""
    out = []
    for img in x:
        img = gaussian_blur(img[None], float(rng.uniform(0.0, 1.0)) if rng.random() < 0.6 else 0.0)[0]
        img = img * float(rng.uniform(0.9, 1.1)) + float(rng.uniform(-0.08, 0.08))
        img = img + torch.randn_like(img) * float(rng.uniform(0.0, 0.06))
        out.append(img.clamp(-1, 1))
    return torch.stack(out)
