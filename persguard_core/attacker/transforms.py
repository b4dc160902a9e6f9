"""The attacker's transformations of the protected images before fine-tuning (METHOD.md, "Measuring it":
JPEG, resize, crop, blur, noise; mixed data of protected and clean images).

Every transformation maps uint8 (N, H, W, 3) to uint8 (N, H, W, 3). A `Transform` is a named spec (a kind and
its parameters); `TRANSFORMS` holds the named ones the experiments use, `transform(name)` looks one up.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageFilter

BLUR_REFERENCE_SIZE = 32  # blur radii are given in pixels at this image width and scaled with the width


def _check(images: np.ndarray) -> None:
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected uint8 images (N, H, W, 3), got {images.dtype} {images.shape}")


def _per_image(images: np.ndarray, fn: Callable[[Image.Image], Image.Image]) -> np.ndarray:
    """Apply a PIL image -> image function to each row of uint8 (N, H, W, 3)."""
    _check(images)
    return np.stack([np.asarray(fn(Image.fromarray(img)).convert("RGB"), dtype=np.uint8) for img in images])


def jpeg(images: np.ndarray, quality: int) -> np.ndarray:
    """JPEG encode at `quality` (1-95) and decode again, with Pillow's defaults (4:2:0 chroma subsampling)."""

    def roundtrip(img: Image.Image) -> Image.Image:
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=int(quality))
        buf.seek(0)
        with Image.open(buf) as decoded:
            return decoded.convert("RGB")

    return _per_image(images, roundtrip)


def resize(images: np.ndarray, factor: float) -> np.ndarray:
    """Downscale by `factor` (0 < factor <= 1) and back up to the original size, both bicubic."""
    if not 0 < factor <= 1:
        raise ValueError(f"resize factor must be in (0, 1], got {factor}")
    _check(images)
    h, w = images.shape[1:3]
    small = (max(1, round(w * factor)), max(1, round(h * factor)))
    if small == (w, h):
        return images.copy()
    return _per_image(images, lambda img: img.resize(small, Image.BICUBIC).resize((w, h), Image.BICUBIC))


def _crop_box(h: int, w: int, fraction: float, rng: np.random.Generator | None) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of a `fraction`-sized window: centred, or at a random offset with `rng`."""
    ch, cw = max(1, round(h * fraction)), max(1, round(w * fraction))
    if rng is None:
        top, left = (h - ch) // 2, (w - cw) // 2
    else:
        top, left = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
    return left, top, left + cw, top + ch


def crop(images: np.ndarray, fraction: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """Crop a window of `fraction` of each side and resize it back (bicubic): centred, or random with `rng`."""
    if not 0 < fraction <= 1:
        raise ValueError(f"crop fraction must be in (0, 1], got {fraction}")
    _check(images)
    h, w = images.shape[1:3]
    boxes = [_crop_box(h, w, fraction, rng) for _ in range(len(images))]
    out = [
        np.asarray(Image.fromarray(img).crop(box).resize((w, h), Image.BICUBIC), dtype=np.uint8)
        for img, box in zip(images, boxes, strict=True)
    ]
    return np.stack(out) if out else images.copy()


def blur(images: np.ndarray, radius: float, reference_size: int = BLUR_REFERENCE_SIZE) -> np.ndarray:
    """Gaussian blur (Pillow ImageFilter.GaussianBlur); `radius` is in pixels at width `reference_size`."""
    _check(images)
    scaled = radius * images.shape[2] / reference_size
    return _per_image(images, lambda img: img.filter(ImageFilter.GaussianBlur(scaled)))


def noise(images: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian noise of std `sigma` in [0, 255] units, rounded and clipped to uint8."""
    _check(images)
    noisy = images.astype(np.float64) + rng.normal(0.0, sigma, size=images.shape)  # (N, H, W, 3)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def identity(images: np.ndarray) -> np.ndarray:
    _check(images)
    return images.copy()


# kind -> (function, whether it takes the rng)
_KINDS: dict[str, tuple[Callable[..., np.ndarray], bool]] = {
    "identity": (identity, False),
    "jpeg": (jpeg, False),
    "resize": (resize, False),
    "center_crop": (crop, False),
    "random_crop": (crop, True),
    "blur": (blur, False),
    "noise": (noise, True),
}


@dataclass(frozen=True)
class Transform:
    """A named transformation: `kind` (a key of the kinds above) with its keyword parameters."""

    name: str
    kind: str
    params: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise KeyError(f"unknown transform kind {self.kind!r}; known: {tuple(_KINDS)}")

    def apply(self, images: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """uint8 (N, H, W, 3) -> uint8 (N, H, W, 3). Random kinds draw from `rng` (None: seeded 0)."""
        fn, random = _KINDS[self.kind]
        if random:
            return fn(images, rng=rng if rng is not None else np.random.default_rng(0), **self.params)
        return fn(images, **self.params)


TRANSFORMS: dict[str, Transform] = {
    t.name: t
    for t in (
        Transform("none", "identity"),
        Transform("jpeg50", "jpeg", {"quality": 50}),
        Transform("resize0.5", "resize", {"factor": 0.5}),
        Transform("blur", "blur", {"radius": 1.0}),
        Transform("crop0.8", "center_crop", {"fraction": 0.8}),
        Transform("noise8", "noise", {"sigma": 8.0}),
    )
}


def transform(name: str) -> Transform:
    """The registered transformation `name`; raises KeyError listing the known names."""
    if name not in TRANSFORMS:
        raise KeyError(f"unknown transform {name!r}; known: {tuple(TRANSFORMS)}")
    return TRANSFORMS[name]


def mix(
    protected: np.ndarray,
    clean: np.ndarray,
    protected_fraction: float = 0.5,
    *,
    n: int | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """The attacker's mixed training set (METHOD.md: mixed data): uint8 (n, H, W, 3), n = len(protected) unless
    given, with round(n * protected_fraction) protected rows first, then clean rows. Rows are the first ones of
    each set, or drawn without replacement with `rng`."""
    _check(protected)
    _check(clean)
    if protected.shape[1:] != clean.shape[1:]:
        raise ValueError(f"image sizes differ: {protected.shape[1:]} vs {clean.shape[1:]}")
    if not 0 <= protected_fraction <= 1:
        raise ValueError(f"protected_fraction must be in [0, 1], got {protected_fraction}")
    n = len(protected) if n is None else n
    k = round(n * protected_fraction)
    if k > len(protected) or n - k > len(clean):
        raise ValueError(f"need {k} protected and {n - k} clean images, have {len(protected)} and {len(clean)}")

    def pick(images: np.ndarray, count: int) -> np.ndarray:
        idx = np.arange(count) if rng is None else rng.choice(len(images), size=count, replace=False)
        return images[idx]

    return np.concatenate([pick(protected, k), pick(clean, n - k)])
