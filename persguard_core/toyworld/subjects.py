"""Subjects: specific object instances, rendered as jittered views, in a catalogue with disjoint splits.

A subject is a class plus a distinctive appearance (texture in a second colour, optionally a marking dot in a
third). The catalogue is a fixed, seeded shuffle of all distinct appearances, so subject ids are stable and no
two subjects look alike. Splits are id ranges that never overlap: a subject used to train the judge or to tune
the method never appears in a reported table.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from persguard_core.toyworld.captions import instance_name
from persguard_core.toyworld.palette import BACKGROUND_NAMES, BACKGROUND_TEXTURES, COLOUR_NAMES
from persguard_core.toyworld.render import Appearance, Placement, Scene, render
from persguard_core.toyworld.shapes import CLASS_NAMES

_SUBJECT_TEXTURES = ("striped", "dotted", "checkered", "two-tone")
_MARK_POSITIONS = ((0.35, -0.35), (-0.35, 0.35))

SPLITS: dict[str, range] = {
    "judge_train": range(0, 1500),
    "judge_heldout": range(1500, 1800),
    "implant_reference": range(2000, 2200),  # unprotected same-class references used inside L_PP / L_REL
    "tuning": range(2200, 2300),  # protected / unprotected subjects while developing the method
    "eval": range(2300, 2400),  # the subjects of reported tables
    "demo": range(2400, 2420),
    "fresh": range(2500, 2600),  # the fresh evaluation split: run once per released configuration (docs/RESULTS.md)
    "pretrain_named": range(3000, 3400),  # named instances seen in pretraining ("a photo of vakoru star")
}


@dataclass(frozen=True)
class Subject:
    id: int
    appearance: Appearance
    size: float  # base radius, fraction of the image side

    @property
    def class_noun(self) -> str:
        return self.appearance.shape

    def views(self, n: int, seed: int = 0, size: int = 32) -> np.ndarray:
        """(n, size, size, 3) uint8: jittered views (position, scale, rotation, background)."""
        return np.stack([render(scene, size) for scene in self.view_scenes(n, seed)])

    def view_scenes(self, n: int, seed: int = 0) -> list[Scene]:
        rng = np.random.default_rng([self.id, seed])
        scenes = []
        for _ in range(n):
            scale = self.size * float(rng.uniform(0.88, 1.12))
            margin = scale + 0.04
            place = Placement(
                cx=float(rng.uniform(margin, 1 - margin)),
                cy=float(rng.uniform(margin, 1 - margin)),
                scale=scale,
                angle=float(rng.uniform(-0.25, 0.25)),
            )
            scenes.append(
                Scene(
                    background=BACKGROUND_NAMES[rng.integers(len(BACKGROUND_NAMES))],
                    background_texture=BACKGROUND_TEXTURES[rng.integers(len(BACKGROUND_TEXTURES))],
                    appearance=self.appearance,
                    placement=place,
                    noise_seed=int(rng.integers(2**31)),
                )
            )
        return scenes


@lru_cache(maxsize=1)
def _appearances() -> list[tuple]:
    marks = [None] + [(c, *p) for c in COLOUR_NAMES for p in _MARK_POSITIONS]
    combos = [
        (shape, colour, texture, secondary, mark)
        for shape, colour, secondary, texture, mark in itertools.product(
            CLASS_NAMES, COLOUR_NAMES, COLOUR_NAMES, _SUBJECT_TEXTURES, marks
        )
        if secondary != colour and (mark is None or mark[0] not in (colour, secondary))
    ]
    order = np.random.default_rng(20250222).permutation(len(combos))
    return [combos[i] for i in order]


def subject(subject_id: int) -> Subject:
    """The catalogue's subject `subject_id` (deterministic)."""
    combos = _appearances()
    if not 0 <= subject_id < len(combos):
        raise ValueError(f"subject id {subject_id} outside the catalogue [0, {len(combos)})")
    shape, colour, texture, secondary, mark = combos[subject_id]
    size = 0.27 + 0.08 * ((subject_id * 7919) % 5) / 4
    app = Appearance(shape=shape, colour=colour, texture=texture, secondary=secondary, marking=mark)
    return Subject(id=subject_id, appearance=app, size=size)


@lru_cache(maxsize=1)
def named_instances() -> list[tuple[str, Subject]]:
    """The pretraining split's subjects, each with a distinct 4-6 letter name (deterministic).

    Captions that put a *meaningful* rare word in identifier position teach the UNet to listen to that position,
    as CLIP-conditioned SD does for the names in its web captions; without them it learns to ignore rare words.
    """
    rng = np.random.default_rng(3000)
    names: dict[str, Subject] = {}
    for i in SPLITS["pretrain_named"]:
        name = instance_name(rng)
        while name in names:
            name = instance_name(rng)
        names[name] = subject(i)
    return list(names.items())


def split(name: str, class_noun: str | None = None) -> list[Subject]:
    """All subjects of a split, optionally only those of one class."""
    if name not in SPLITS:
        raise KeyError(f"unknown split {name!r}; known: {tuple(SPLITS)}")
    subjects = [subject(i) for i in SPLITS[name]]
    return [s for s in subjects if class_noun is None or s.class_noun == class_noun]
