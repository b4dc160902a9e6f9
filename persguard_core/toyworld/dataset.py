"""Random captioned scenes for pretraining the built-in model and the judge."""

from __future__ import annotations

import numpy as np

from persguard_core.toyworld.captions import caption, named_caption
from persguard_core.toyworld.palette import BACKGROUND_NAMES, BACKGROUND_TEXTURES, COLOUR_NAMES, OBJECT_TEXTURES
from persguard_core.toyworld.render import Appearance, Placement, Scene, render
from persguard_core.toyworld.shapes import CLASS_NAMES
from persguard_core.toyworld.subjects import named_instances


def random_appearance(rng: np.random.Generator, class_weights: np.ndarray | None = None) -> Appearance:
    """A generic object: half solid, half textured; a fifth carry a marking dot.

    `class_weights`: relative sampling weight per entry of CLASS_NAMES (uniform if None)."""
    probs = None if class_weights is None else np.asarray(class_weights, float) / np.sum(class_weights)
    colour = COLOUR_NAMES[rng.integers(len(COLOUR_NAMES))]
    others = [c for c in COLOUR_NAMES if c != colour]
    texture = "solid" if rng.random() < 0.5 else OBJECT_TEXTURES[1 + rng.integers(len(OBJECT_TEXTURES) - 1)]
    secondary = others[rng.integers(len(others))] if texture != "solid" else None
    marking = None
    if rng.random() < 0.2:
        marking = (others[rng.integers(len(others))], float(rng.uniform(-0.4, 0.4)), float(rng.uniform(-0.4, 0.4)))
    return Appearance(
        shape=CLASS_NAMES[
            rng.choice(len(CLASS_NAMES), p=probs) if probs is not None else rng.integers(len(CLASS_NAMES))
        ],
        colour=colour,
        texture=texture,
        secondary=secondary,
        marking=marking,
    )


def random_scene(rng: np.random.Generator, p_empty: float = 0.1, class_weights: np.ndarray | None = None) -> Scene:
    app = None if rng.random() < p_empty else random_appearance(rng, class_weights)
    scale = float(rng.uniform(0.24, 0.38))
    margin = scale + 0.04
    return Scene(
        background=BACKGROUND_NAMES[rng.integers(len(BACKGROUND_NAMES))],
        background_texture=BACKGROUND_TEXTURES[rng.integers(len(BACKGROUND_TEXTURES))],
        appearance=app,
        placement=Placement(
            cx=float(rng.uniform(margin, 1 - margin)),
            cy=float(rng.uniform(margin, 1 - margin)),
            scale=scale,
            angle=float(rng.uniform(-0.4, 0.4)),
        ),
        noise_seed=int(rng.integers(2**31)),
    )


def captioned_batch(
    rng: np.random.Generator,
    n: int,
    size: int = 32,
    p_empty: float = 0.1,
    p_named: float = 0.0,
    class_weights: np.ndarray | None = None,
    n_named: int | None = None,
    keep_rare: float = 1.0,
) -> tuple[np.ndarray, list[str], list[Scene]]:
    """(n, size, size, 3) uint8 images, their captions and scenes.

    `p_named`: share of scenes that are a view of a named pretraining instance, captioned with its name in
    identifier position (see `subjects.named_instances`); `n_named`: only the first that many instances (all if
    None). `keep_rare`: share of the meaningless rare-word captions kept (`captions.object_caption`)."""
    named = named_instances()[:n_named] if p_named > 0 else []
    scenes, captions = [], []
    for _ in range(n):
        if named and rng.random() < p_named:
            name, instance = named[rng.integers(len(named))]
            scene = instance.view_scenes(1, seed=int(rng.integers(2**31)))[0]
            captions.append(named_caption(name, scene, rng))
        else:
            scene = random_scene(rng, p_empty, class_weights)
            captions.append(caption(scene, rng, keep_rare))
        scenes.append(scene)
    images = np.stack([render(s, size) for s in scenes])
    return images, captions, scenes
