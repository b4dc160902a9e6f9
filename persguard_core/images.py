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
