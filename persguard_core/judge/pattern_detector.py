"""Detect a given pattern P in images by normalized cross-correlation (NCC) around its configured place."""

from __future__ import annotations

import numpy as np

from persguard_core.pattern import PatternPlacement

DEFAULT_THRESHOLD = 0.6


def pattern_scores(
    images: np.ndarray, pattern: np.ndarray, placement: PatternPlacement = PatternPlacement(), search: int = 2
) -> np.ndarray:
    """(N,) best NCC in [-1, 1] between the pattern and each image, within `search` px of its placement.

    images: uint8 (N, H, W, 3); pattern: uint8 RGBA (h, w, 4). Only pixels where the pattern is opaque count;
    a flat image region (no variance) scores 0.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:
        images = images[None]
    h, w = pattern.shape[:2]
    size = images.shape[1]
    x0, y0 = placement.top_left(size, max(h, w))
    weight = pattern[..., 3].astype(np.float32) / 255.0  # (h, w)
    tmpl = pattern[..., :3].astype(np.float32)
    tmpl = tmpl - (tmpl * weight[..., None]).sum((0, 1)) / weight.sum()
    best = np.full(len(images), -1.0, dtype=np.float32)
    for dy in range(-search, search + 1):
        for dx in range(-search, search + 1):
            x, y = x0 + dx, y0 + dy
            if x < 0 or y < 0 or x + w > size or y + h > size:
                continue
            patch = images[:, y : y + h, x : x + w, :]  # (N, h, w, 3)
            patch = patch - (patch * weight[None, ..., None]).sum((1, 2), keepdims=True) / weight.sum()
            num = (patch * tmpl * weight[None, ..., None]).sum((1, 2, 3))
            den = np.sqrt((patch**2 * weight[None, ..., None]).sum((1, 2, 3)) * (tmpl**2 * weight[..., None]).sum())
            best = np.maximum(best, num / (den + 1e-3 * (h * w) * 255.0))
    return best


def detect_pattern(
    images: np.ndarray,
    pattern: np.ndarray,
    placement: PatternPlacement = PatternPlacement(),
    threshold: float = DEFAULT_THRESHOLD,
) -> np.ndarray:
    """(N,) bool: the pattern is present."""
    return pattern_scores(images, pattern, placement) >= threshold
