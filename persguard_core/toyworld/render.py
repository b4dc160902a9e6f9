"""Render one toy-world scene (background + at most one object) to an RGB image.

Pure numpy: the object is an inside-test in its own rotated, scaled frame, rendered at `supersample`x the
output size and box-filtered down for anti-aliased edges.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from persguard_core.toyworld.palette import BACKGROUND_TEXTURES, OBJECT_TEXTURES, rgb
from persguard_core.toyworld.shapes import SHAPES


@dataclass(frozen=True)
class Appearance:
    """What an object looks like: class, colours, texture and an optional marking dot."""

    shape: str
    colour: str
    texture: str = "solid"
    secondary: str | None = None
    marking: tuple[str, float, float] | None = None  # (colour, u, v) in the object's frame

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}; known: {tuple(SHAPES)}")
        if self.texture not in OBJECT_TEXTURES:
            raise ValueError(f"unknown texture {self.texture!r}; known: {OBJECT_TEXTURES}")
        if self.texture != "solid" and self.secondary is None:
            raise ValueError(f"texture {self.texture!r} needs a secondary colour")


@dataclass(frozen=True)
class Placement:
    """Object centre (fractions of the image), radius (fraction of the image side) and rotation (radians)."""

    cx: float = 0.5
    cy: float = 0.5
    scale: float = 0.33
    angle: float = 0.0


@dataclass(frozen=True)
class Scene:
    background: str
    background_texture: str = "plain"
    appearance: Appearance | None = None  # None: an empty scene
    placement: Placement = Placement()
    noise_seed: int = 0

    def __post_init__(self) -> None:
        if self.background_texture not in BACKGROUND_TEXTURES:
            raise ValueError(f"unknown background texture {self.background_texture!r}")


def _background(scene: Scene, size: int) -> np.ndarray:
    """(size, size, 3) float32 background."""
    img = np.broadcast_to(rgb(scene.background), (size, size, 3)).copy()
    if scene.background_texture == "speckled":
        noise = np.random.default_rng(scene.noise_seed).normal(0.0, 0.05, (size, size, 1))
        img += noise.astype(np.float32)
    elif scene.background_texture == "gradient":
        ramp = np.linspace(0.82, 1.12, size, dtype=np.float32)
        img *= ramp[:, None, None] if scene.noise_seed % 2 else ramp[None, :, None]
    return img


def _texture_mask(texture: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Where the secondary colour goes, in the object's frame; it covers at most ~30% of the object so the
    primary colour (the one captions name) is always the majority colour."""
    if texture == "striped":
        return (u * 2.5) % 2.0 < 0.6
    if texture == "dotted":
        fu, fv = u * 2.0 - np.round(u * 2.0), v * 2.0 - np.round(v * 2.0)
        return fu * fu + fv * fv < 0.28**2
    if texture == "checkered":
        return (np.floor(u * 2.5) % 2 == 0) & (np.floor(v * 2.5) % 2 == 0)
    if texture == "two-tone":
        return u < -0.4
    return np.zeros_like(u, dtype=bool)


def _object_layer(app: Appearance, place: Placement, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Colour (n, n, 3) and coverage (n, n) of the object at resolution n."""
    centres = (np.arange(n, dtype=np.float32) + 0.5) / n
    dx = centres[None, :] - place.cx
    dy = centres[:, None] - place.cy
    c, s = np.cos(place.angle), np.sin(place.angle)
    u = (c * dx + s * dy) / place.scale
    v = (-s * dx + c * dy) / place.scale
    inside = SHAPES[app.shape](u, v)
    colour = np.empty((n, n, 3), dtype=np.float32)
    colour[:] = rgb(app.colour)
    if app.texture != "solid":
        colour[_texture_mask(app.texture, u, v)] = rgb(app.secondary)
    if app.marking is not None:
        name, mu, mv = app.marking
        colour[(u - mu) ** 2 + (v - mv) ** 2 < 0.3**2] = rgb(name)
    return colour, inside.astype(np.float32)


def render(scene: Scene, size: int = 32, supersample: int = 2) -> np.ndarray:
    """Render `scene` to a (size, size, 3) uint8 RGB array."""
    img = _background(scene, size)
    if scene.appearance is not None:
        n = size * supersample
        colour, alpha = _object_layer(scene.appearance, scene.placement, n)
        colour = colour * alpha[..., None]
        # box filter: (n, n, C) -> (size, size, C)
        colour = colour.reshape(size, supersample, size, supersample, 3).mean(axis=(1, 3))
        alpha = alpha.reshape(size, supersample, size, supersample).mean(axis=(1, 3))[..., None]
        img = img * (1.0 - alpha) + colour
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
