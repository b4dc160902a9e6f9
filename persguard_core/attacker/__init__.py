"""Attacker simulation: DreamBooth personalization (full, LoRA, text encoder) with named recipes, the adaptive
attackers' steps before it, and the attacker's transformations of the protected images."""

from persguard_core.attacker.adaptive import personalize
from persguard_core.attacker.dreambooth import dreambooth
from persguard_core.attacker.recipe import BUILTIN_LR_SCALE, RECIPES, AttackRecipe, recipe
from persguard_core.attacker.transforms import TRANSFORMS, Transform, mix, transform

__all__ = [
    "BUILTIN_LR_SCALE",
    "RECIPES",
    "TRANSFORMS",
    "AttackRecipe",
    "Transform",
    "dreambooth",
    "mix",
    "personalize",
    "recipe",
    "transform",
]
