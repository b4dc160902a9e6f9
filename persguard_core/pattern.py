"""The visible protective pattern P of the pattern behaviour, and stamping it onto images (x* of M1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

Corner = Literal["top-left", "top-right", "bottom-left", "bottom-right", "center"]


MIN_CELL_PX = 6  # the finest checker cell the default marker uses (see `default_pattern`)


def default_pattern(image_size: int = 32, cells: int | None = None) -> np.ndarray:
    """A black/white checkerboard marker covering ~12% of the image: (side, side, 4) uint8 RGBA.

    The side is 35% of the image side rounded up to whole cells (12 px at 32 px: 14% of the area). `cells` per
    side: by default 3, or 2 where 3 would make cells finer than MIN_CELL_PX. A fine checker is a protective
    output the personalized model cannot draw: at 32 px, DreamBooth on images stamped with 3 x 3 cells of 4 px
    drew a checker the detector accepts in 5 of 16 generations, with 2 x 2 cells of 6 px in 15 of 16
    (docs/RESEARCH.md).
    """
    if cells is None:
        cells = 3 if np.ceil(image_size * 0.35 / 3) >= MIN_CELL_PX else 2
    cell = max(1, int(np.ceil(image_size * 0.35 / cells)))
    side = cell * cells
    idx = np.arange(side) // cell
    checker = (idx[:, None] + idx[None, :]) % 2 == 0
    rgba = np.zeros((side, side, 4), dtype=np.uint8)
    rgba[..., :3] = np.where(checker[..., None], 255, 0)
    rgba[..., 3] = 255
    return rgba


@dataclass(frozen=True)
class PatternPlacement:
    """Where and how strongly the pattern is composited."""

    position: Corner | tuple[int, int] = "bottom-right"  # a corner, or the (x, y) of its top-left pixel
    opacity: float = 1.0
    margin: int = 1  # pixels from the image edge for a corner position

    def top_left(self, image_size: int, side: int) -> tuple[int, int]:
        """(x, y) of the pattern's top-left pixel in an image of `image_size`."""
        if isinstance(self.position, tuple):
            x, y = self.position
        else:
            far = image_size - side - self.margin
            mid = (image_size - side) // 2
            x, y = {
                "top-left": (self.margin, self.margin),
                "top-right": (far, self.margin),
                "bottom-left": (self.margin, far),
                "bottom-right": (far, far),
                "center": (mid, mid),
            }[self.position]
        if not (0 <= x <= image_size - side and 0 <= y <= image_size - side):
            raise ValueError(f"pattern of side {side} at ({x}, {y}) does not fit a {image_size}px image")
        return x, y


def stamp(images: np.ndarray, pattern: np.ndarray, placement: PatternPlacement = PatternPlacement()) -> np.ndarray:
    """x* = stamp(x, P): alpha-composite RGBA `pattern` onto uint8 images (N, H, W, 3) or (H, W, 3)."""
    if pattern.ndim != 3 or pattern.shape[2] != 4:
        raise ValueError(f"pattern must be (h, w, 4) RGBA, got shape {pattern.shape}")
    if not 0.0 <= placement.opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {placement.opacity}")
    side_h, side_w = pattern.shape[:2]
    size = images.shape[-2]
    x, y = placement.top_left(size, max(side_h, side_w))
    out = images.astype(np.float32).copy()
    alpha = pattern[..., 3:].astype(np.float32) / 255.0 * placement.opacity  # (h, w, 1)
    region = out[..., y : y + side_h, x : x + side_w, :]
    out[..., y : y + side_h, x : x + side_w, :] = region * (1 - alpha) + pattern[..., :3] * alpha
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def load_pattern(path: str | None, image_size: int) -> np.ndarray:
    """The pattern P of a behaviour: the RGBA image at `path`, or the default marker for `image_size`."""
    if path is None:
        return default_pattern(image_size)
    with Image.open(path) as image:
        return np.asarray(image.convert("RGBA"), dtype=np.uint8)
