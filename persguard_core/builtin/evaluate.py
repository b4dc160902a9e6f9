"""Quality checks of a base model on the toy world, scored by the judge.

- prompt following: class and colour accuracy on "a photo of a {colour} {class}" generations;
- personalizability: plain DreamBooth on a subject makes "a photo of sks {class}" reproduce it (identity
  similarity to held-out views of the subject, before vs after).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from diffusers import StableDiffusionPipeline

from persguard_core.attacker import AttackRecipe, dreambooth
from persguard_core.generate import generate
from persguard_core.judge.toy import ToyJudge
from persguard_core.toyworld import CLASS_NAMES, COLOUR_NAMES, Subject
from persguard_core.toyworld.captions import article


def colour_class_prompts(n: int) -> tuple[list[str], list[str], list[str]]:
    """n prompts cycling over every (colour, class) pair; returns prompts, classes, colours."""
    pairs = list(itertools.product(COLOUR_NAMES, CLASS_NAMES))
    chosen = [pairs[i % len(pairs)] for i in range(n)]
    prompts = [f"a photo of {article(colour)} {colour} {shape}" for colour, shape in chosen]
    return prompts, [s for _, s in chosen], [c for c, _ in chosen]


def prompt_following(
    pipe: StableDiffusionPipeline, judge: ToyJudge, n: int = 224, seed: int = 0, steps: int = 25
) -> dict[str, float]:
    prompts, classes, colours = colour_class_prompts(n)
    return score_prompt_following(judge, generate(pipe, prompts, seed=seed, steps=steps), classes, colours)


def score_prompt_following(
    judge: ToyJudge, images: np.ndarray, classes: list[str], colours: list[str]
) -> dict[str, float]:
    """Class and colour accuracy of the images generated for `colour_class_prompts`' prompts."""
    verdicts = judge.judge(images)
    return {
        "class_accuracy": float(np.mean([p == t for p, t in zip(verdicts.classes, classes, strict=True)])),
        "colour_accuracy": float(np.mean([p == t for p, t in zip(verdicts.colours, colours, strict=True)])),
        "n_images": len(images),
    }


@dataclass
class PersonalizationResult:
    similarity_before: float  # mean identity similarity of "sks {class}" images to the subject, base model
    similarity_after: float  # the same after DreamBooth on the subject
    class_accuracy_after: float  # share of "sks {class}" images judged as the class after DreamBooth


def personalization(
    pipe: StableDiffusionPipeline,
    judge: ToyJudge,
    subject: Subject,
    recipe: AttackRecipe,
    n_train: int = 8,
    n_eval: int = 16,
    steps: int = 25,
) -> PersonalizationResult:
    """DreamBooth on `n_train` views; compare identity similarity to held-out views before and after."""
    train_views = subject.views(n_train, seed=0)
    references = subject.views(16, seed=1)
    prompts = [recipe.instance_prompt(subject.class_noun)] * n_eval
    before = generate(pipe, prompts, seed=123, steps=steps)
    tuned = dreambooth(pipe, train_views, subject.class_noun, recipe)
    after = generate(tuned, prompts, seed=123, steps=steps)
    verdicts = judge.judge(after)
    return PersonalizationResult(
        similarity_before=float(judge.identity_similarity(before, references).mean()),
        similarity_after=float(judge.identity_similarity(after, references).mean()),
        class_accuracy_after=float(np.mean([c == subject.class_noun for c in verdicts.classes])),
    )
