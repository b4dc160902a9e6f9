"""Object classes of the toy world as inside-tests in the object's own frame.

Each function takes local coordinates u, v (arrays, the object spans roughly [-1, 1]) and returns a boolean
mask. Image y points down, so a triangle's apex has negative v.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Mask = Callable[[np.ndarray, np.ndarray], np.ndarray]


def circle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u * u + v * v <= 1.0


def square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.maximum(np.abs(u), np.abs(v)) <= 0.85


def triangle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (v <= 0.8) & (np.abs(u) <= (v + 0.95) / 1.75 * 1.05)


def diamond(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.abs(u) + np.abs(v) <= 1.0


def cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    au, av = np.abs(u), np.abs(v)
    return ((au <= 0.32) & (av <= 0.95)) | ((av <= 0.32) & (au <= 0.95))


def ring(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    r2 = u * u + v * v
    return (r2 <= 1.0) & (r2 >= 0.5**2)


def star(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    r = np.sqrt(u * u + v * v)
    theta = np.arctan2(u, -v)  # 0 at the top point
    edge = 0.45 + 0.55 * ((1.0 + np.cos(5.0 * theta)) / 2.0) ** 2
    return r <= edge


SHAPES: dict[str, Mask] = {
    "circle": circle,
    "square": square,
    "triangle": triangle,
    "diamond": diamond,
    "cross": cross,
    "ring": ring,
    "star": star,
}
CLASS_NAMES = tuple(SHAPES)
