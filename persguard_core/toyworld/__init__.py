"""The toy world: a seeded procedural generator of captioned images and subjects."""

from persguard_core.toyworld.captions import caption, rare_word
from persguard_core.toyworld.dataset import captioned_batch, random_scene
from persguard_core.toyworld.palette import BACKGROUND_NAMES, COLOUR_NAMES
from persguard_core.toyworld.render import Appearance, Placement, Scene, render
from persguard_core.toyworld.shapes import CLASS_NAMES
from persguard_core.toyworld.subjects import SPLITS, Subject, split, subject

__all__ = [
    "BACKGROUND_NAMES",
    "CLASS_NAMES",
    "COLOUR_NAMES",
    "SPLITS",
    "Appearance",
    "Placement",
    "Scene",
    "Subject",
    "caption",
    "captioned_batch",
    "random_scene",
    "rare_word",
    "render",
    "split",
    "subject",
]
