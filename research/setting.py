"""One row of an experiment (`Setting`) and a matrix of rows over seeds (`Preset`), as typed data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from persguard_core.spec import Carrier, EncoderTraining, LossWeights, Training

RowBehaviour = Literal["pattern", "erasure", "target", "mixed"]  # "mixed" cycles the three over the subjects
Method = Literal["persguard", "anti-dreambooth"]  # anti-dreambooth: the data-level baseline (ASPL) on the base
KnowledgeKind = Literal["white-box", "gray-box", "black-box"]
PatternForm = Literal["stamped", "insertion", "insert-and-keep", "guided-insertion"]  # PatternBehaviour.target_form
Split = Literal["tuning", "eval", "fresh"]


@dataclass(frozen=True)
class Setting:
    """One row of a matrix: what is protected how, and how the attacker personalizes."""

    name: str
    behaviour: RowBehaviour = "pattern"
    method: Method = "persguard"
    n_subjects: int = 1  # protected subjects in one model (classes cycle)
    # the unprotected class-mates attacked: the first protected subject's ("first"), or one per protected class
    class_mates: Literal["first", "each-class"] = "first"
    pattern_form: PatternForm = "stamped"
    insert_above: int = 500  # insert-and-keep / guided-insertion: M1' at t >= this, M1 below
    knowledge: KnowledgeKind = "white-box"
    attack: str = "full"  # a recipe name of persguard_core.attacker.RECIPES
    attack_steps: int | None = None  # None: the recipe's
    attack_lr_scale: float | None = None  # the recipe's learning rates times this; None: BUILTIN_LR_SCALE (x30)
    transform: str | None = None  # a name of persguard_core.attacker.TRANSFORMS applied to the attacker's images
    mixed: bool = False  # the attacker uses half protected images, half other clean images of the subject
    template: str | None = None  # the attacker's instance-prompt template, where not the knowledge's
    identifier: str | None = None  # the attacker's identifier (a white-box protection knows it), where not "sks"
    losses: LossWeights = field(default_factory=LossWeights)
    training: Training = field(default_factory=Training)
    carrier: Carrier = "unet"
    encoder: EncoderTraining = field(default_factory=EncoderTraining)


@dataclass(frozen=True)
class Preset:
    """Settings x seeds: seed s protects subjects of class s mod 5 (and the next classes) from `split`."""

    settings: list[Setting]
    seeds: list[int]
    n_images: int = 16  # generations judged per case
    n_train_views: int = 6  # the attacker's photos of a subject
    sample_steps: int = 25
    references_per_class: int = 2  # unprotected class-mates the protection keeps normal
    split: Split = "eval"  # "tuning" while developing the method; reported tables use "eval" (or "fresh")
    attack_draws: int = 1  # attacks per protected model: draw k runs the recipe with seed `seed + 1000 k`
    base_model: str = "builtin"  # what is protected and attacked: "builtin" or a model folder (`--base-model`)
