"""Read subject images from files into uint8 arrays at the model's resolution."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps


def load_image(path: str | Path, size: int) -> np.ndarray:
    """(size, size, 3) uint8: EXIF-rotated, RGB, centre-cropped to a square and resized (bicubic)."""
    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img).convert("RGB")
        side = min(img.size)
        left, top = (img.width - side) // 2, (img.height - side) // 2
        img = img.crop((left, top, left + side, top + side))
        if side != size:
            img = img.resize((size, size), Image.BICUBIC)
        return np.asarray(img, dtype=np.uint8)


class UnreadableImage(ValueError):
    """An input file cannot be read as an image (missing, truncated or not an image)."""


def check_images(named: list[tuple[str, str | Path]]) -> None:
    """Raise UnreadableImage naming the first (owner, path) whose file cannot be read as an image, before any model
    work would fail on it minutes later."""
    for owner, path in named:
        try:
            with Image.open(path) as img:
                img.load()
        except (OSError, SyntaxError, ValueError) as exc:  # PIL's errors for missing, truncated or foreign files
            raise UnreadableImage(f"{owner}: {path} cannot be read as an image ({exc})") from exc


def load_images(paths: list[str | Path], size: int) -> np.ndarray:
    """(N, size, size, 3) uint8."""
    if not paths:
        raise ValueError("no images given")
    return np.stack([load_image(p, size) for p in paths])


def save_images(images: np.ndarray, folder: Path, prefix: str = "img") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(images):
        paths.append(folder / f"{prefix}_{i:03d}.png")
        Image.fromarray(img).save(paths[-1])
    return paths


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def fill_from_surroundings(
    images: np.ndarray, masks: np.ndarray, rng: np.random.Generator, iterations: int = 200
) -> np.ndarray:
    """uint8 (N, H, W, 3), bool (N, H, W) -> uint8 (N, H, W, 3): each masked region repainted from the pixels around
    it, M2's "background without the subject" made from the subject's own photo.

    Two parts, so that a textured background stays textured:
    - the smooth part: the masked pixels start at the mean of the unmasked ones and relax towards the average of
      their four neighbours (Jacobi iterations of Laplace's equation, the unmasked pixels as the boundary);
    - the grain: each masked pixel adds the fine detail (pixel minus its 3 x 3 mean) of a random unmasked pixel.
    An image whose mask is empty or covers everything is returned unchanged."""
    if images.shape[:3] != masks.shape:
        raise ValueError(f"images {images.shape} and masks {masks.shape} differ in size")
    out = images.astype(np.float32)
    for img, mask in zip(out, masks.astype(bool), strict=True):
        if not mask.any() or mask.all():
            continue
        grain = (img - _mean3x3(img))[~mask]  # (n_unmasked, 3)
        img[mask] = img[~mask].mean(axis=0)
        for _ in range(iterations):
            padded = np.pad(img, ((1, 1), (1, 1), (0, 0)), mode="edge")
            neighbours = (padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:]) / 4
            img[mask] = neighbours[mask]
        img[mask] += grain[rng.integers(len(grain), size=int(mask.sum()))]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _mean3x3(img: np.ndarray) -> np.ndarray:
    """(H, W, C) float -> (H, W, C): the mean of each pixel's 3 x 3 neighbourhood (edges repeated)."""
    padded = np.pad(img, ((1, 1), (1, 1), (0, 0)), mode="edge")
    h, w = img.shape[:2]
    return sum(padded[i : i + h, j : j + w] for i in range(3) for j in range(3)) / 9
