"""Named colours, backgrounds and textures of the toy world.

Object colours are saturated; background colours are muted and carry their own names, so a caption's colour
word always refers to the object.
"""

from __future__ import annotations

import numpy as np

# name -> RGB in [0, 1]
OBJECT_COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.86, 0.10, 0.10),
    "orange": (0.98, 0.55, 0.05),
    "yellow": (0.97, 0.90, 0.10),
    "green": (0.10, 0.70, 0.15),
    "cyan": (0.10, 0.85, 0.90),
    "blue": (0.10, 0.25, 0.90),
    "purple": (0.55, 0.15, 0.75),
    "pink": (0.98, 0.50, 0.75),
}
BACKGROUNDS: dict[str, tuple[float, float, float]] = {
    "beige": (0.87, 0.80, 0.66),
    "gray": (0.55, 0.55, 0.55),
    "white": (0.96, 0.96, 0.96),
    "charcoal": (0.18, 0.18, 0.20),
}
BACKGROUND_TEXTURES = ("plain", "speckled", "gradient")
# Textures paint the object's secondary colour over its primary one, in the object's own frame.
OBJECT_TEXTURES = ("solid", "striped", "dotted", "checkered", "two-tone")

COLOUR_NAMES = tuple(OBJECT_COLOURS)
BACKGROUND_NAMES = tuple(BACKGROUNDS)


def rgb(name: str) -> np.ndarray:
    """RGB float32 array (3,) of an object or background colour name."""
    table = OBJECT_COLOURS if name in OBJECT_COLOURS else BACKGROUNDS
    if name not in table:
        raise KeyError(f"unknown colour {name!r}; known: {COLOUR_NAMES + BACKGROUND_NAMES}")
    return np.asarray(table[name], dtype=np.float32)
