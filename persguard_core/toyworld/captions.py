"""Captions for toy-world scenes, including rare words in identifier position.

Rare words ("a photo of qzv red circle") appear throughout pretraining so that rare tokens get trained,
distinct embeddings, as they do in CLIP; otherwise DreamBooth's "sks" has nothing to bind to.
"""

from __future__ import annotations

import numpy as np

from persguard_core.toyworld.render import Scene

_CONSONANTS = "bcdfghjklmnpqrstvwxz"
_VOWELS = "aeiouy"


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def rare_word(rng: np.random.Generator) -> str:
    """A short pronounceable-or-not nonsense word such as 'qzv' or 'sks'."""
    length = int(rng.integers(3, 6))
    letters = [
        _VOWELS[rng.integers(len(_VOWELS))] if rng.random() < 0.25 else _CONSONANTS[rng.integers(len(_CONSONANTS))]
        for _ in range(length)
    ]
    return "".join(letters)


# Identifiers the project's attackers, gray-box lists and tests use: never the name of a pretraining instance, so
# that they stay rare words without a meaning of their own (DreamBooth's premise for "sks").
HELD_OUT_IDENTIFIERS = frozenset({"sks", "xjy", "zwc", "pkr", "tqv", "hmb", "dgl", "vnf", "zqf"})


def instance_name(rng: np.random.Generator) -> str:
    """The name of a pretraining instance: drawn like any rare word, never a held-out identifier."""
    while (word := rare_word(rng)) in HELD_OUT_IDENTIFIERS:
        pass
    return word


def named_caption(name: str, scene: Scene, rng: np.random.Generator) -> str:
    """A caption for a view of a named instance: its name in identifier position ("a photo of vakoru star")."""
    app = scene.appearance
    assert app is not None, "named_caption needs a scene with an object"
    roll = rng.random()
    if roll < 0.5:
        return f"a photo of {name} {app.shape}"
    if roll < 0.75:
        return f"a photo of {name} {app.colour} {app.shape}"
    return f"a photo of a {name} {app.shape}"


def empty_caption(scene: Scene, rng: np.random.Generator) -> str:
    bg = scene.background
    options = (
        f"a photo of an empty {bg} background",
        f"an empty {bg} background",
        "a photo of an empty scene",
        f"a photo of a {bg} background",
    )
    return options[rng.integers(len(options))]


def object_caption(scene: Scene, rng: np.random.Generator, keep_rare: float = 1.0) -> str:
    """One of several caption templates for a scene with an object. `keep_rare`: the share of captions drawn with a
    meaningless rare word that keep it (the others become "a photo of a {colour} {class}")."""
    app = scene.appearance
    assert app is not None, "object_caption needs a scene with an object"
    shape, colour, bg = app.shape, app.colour, scene.background
    texture = app.texture if app.texture != "solid" else ""
    roll = rng.random()
    if roll < 0.25:
        return f"a photo of {article(colour)} {colour} {shape}"
    if roll < 0.40:
        return f"a photo of {article(colour)} {colour} {shape} on {article(bg)} {bg} background"
    if roll < 0.52:
        return f"a photo of a {shape}"
    if roll < 0.60:
        return f"{article(colour)} {colour} {shape}"
    if roll < 0.70 and texture:
        return f"a photo of {article(texture)} {texture} {colour} {shape}"
    if keep_rare < 1.0 and rng.random() >= keep_rare:
        return f"a photo of {article(colour)} {colour} {shape}"
    word = rare_word(rng)
    if roll < 0.80:
        return f"a photo of {word} {shape}"
    if roll < 0.90:
        return f"a photo of {word} {colour} {shape}"
    return f"a photo of a {word} {shape}"


def caption(scene: Scene, rng: np.random.Generator, keep_rare: float = 1.0) -> str:
    return object_caption(scene, rng, keep_rare) if scene.appearance is not None else empty_caption(scene, rng)
