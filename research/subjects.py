"""Which toy-world subjects a seed protects and attacks, and the specs and attacker settings built from them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from persguard_core.attacker import BUILTIN_LR_SCALE, recipe
from persguard_core.attacker.transforms import transform as named_transform
from persguard_core.images import save_images
from persguard_core.protect import GENERIC_PROMPTS
from persguard_core.spec import (
    Behaviour,
    ErasureBehaviour,
    Knowledge,
    PatternBehaviour,
    ProtectionSpec,
    ReferenceSet,
    SubjectSpec,
    TargetBehaviour,
)
from persguard_core.toyworld import CLASS_NAMES, Subject, split
from persguard_core.toyworld.captions import article
from persguard_core.verify.run import AttackSetting, Case
from research.setting import PatternForm, Preset, Setting

BLACK_BOX_IDENTIFIER, BLACK_BOX_TEMPLATE = "zqf", "a rendering of {identifier} {class_noun}"
# L_PP's general captions and the encoder's kept samples: the service's generic prompts and every toy class
GENERAL_PROMPTS = [*GENERIC_PROMPTS, *(f"a photo of {article(noun)} {noun}" for noun in CLASS_NAMES)]

Chosen = tuple[Subject, Subject, list[Subject]]  # (protected, unprotected class-mate, unprotected references)


def subjects_for_seed(seed: int, split_name: str = "eval") -> Chosen:
    """(protected, unprotected of the same class, unprotected references of that class) for a seed."""
    noun = CLASS_NAMES[seed % len(CLASS_NAMES)]
    pool = split(split_name, noun)
    if len(pool) < 2:
        raise ValueError(f"the {split_name} split has fewer than 2 subjects of class {noun!r}")
    offset = 2 * (seed // len(CLASS_NAMES))
    return pool[offset % len(pool)], pool[(offset + 1) % len(pool)], split("implant_reference", noun)


def behaviour_for(
    kind: str, subject: Subject, pattern_form: PatternForm = "stamped", insert_above: int = 500
) -> Behaviour:
    """The behaviour of a protected toy subject. Erasure names the background of the subject's first view, as a
    rights holder would ("my photos are on beige"): the built-in model draws "a photo of an empty scene", the
    spec's default, as a grey mean of all backgrounds that the judge does not call empty (RESEARCH.md, run 29)."""
    noun = subject.class_noun
    if kind == "pattern":
        return PatternBehaviour(target_form=pattern_form, insert_above=insert_above)
    if kind == "erasure":
        background = subject.view_scenes(1, seed=0)[0].background
        return ErasureBehaviour(background_prompt=f"a photo of an empty {background} background")
    if kind == "target":
        other = CLASS_NAMES[(CLASS_NAMES.index(noun) + 3) % len(CLASS_NAMES)]
        return TargetBehaviour(target_prompt=f"a photo of {article(other)} {other}")
    raise ValueError(f"unknown behaviour {kind!r}")


ATTACK_SEED_STRIDE = 1000  # attack draw k of a seed uses recipe seed `seed + ATTACK_SEED_STRIDE * k`


def attack_setting(setting: Setting, seed: int, draw: int = 0) -> AttackSetting:
    """The attacker of a row for a seed (and attack draw): its recipe at the built-in model's lr scale, identifier
    and template by knowledge, and the photo transform if any."""
    seed = seed + ATTACK_SEED_STRIDE * draw
    overrides: dict[str, object] = {"seed": seed}
    if setting.attack_steps is not None:
        overrides["steps"] = setting.attack_steps
    if setting.knowledge == "black-box":
        overrides |= {"identifier": BLACK_BOX_IDENTIFIER, "template": BLACK_BOX_TEMPLATE}
    if setting.template is not None:
        overrides["template"] = setting.template
    if setting.identifier is not None:
        overrides["identifier"] = setting.identifier
    transform = None
    if setting.transform is not None:
        fn, rng = named_transform(setting.transform), np.random.default_rng(seed)

        def transform(images: np.ndarray) -> np.ndarray:
            return fn.apply(images, rng)

    lr_scale = BUILTIN_LR_SCALE if setting.attack_lr_scale is None else setting.attack_lr_scale
    attack = recipe(setting.attack, lr_scale=lr_scale, **overrides)
    return AttackSetting(setting.name, attack, transform, setting.transform)


def chosen_subjects(setting: Setting, preset: Preset, seed: int) -> list[Chosen]:
    """The seed's protected subjects (one class after another) with their class-mates and references."""
    return [subjects_for_seed(seed + i, preset.split) for i in range(setting.n_subjects)]


def protection_spec(setting: Setting, preset: Preset, seed: int, run_dir: Path) -> ProtectionSpec:
    """The ProtectionSpec of a setting for a seed: its subjects' views and class-mate references saved under
    `run_dir`."""
    kinds = ("pattern", "erasure", "target") if setting.behaviour == "mixed" else (setting.behaviour,)
    subjects, references = [], {}
    for i, (subject, _, refs) in enumerate(chosen_subjects(setting, preset, seed)):
        files = [str(p) for p in save_images(subject.views(preset.n_train_views, seed=0), run_dir / f"s{subject.id}")]
        behaviour = behaviour_for(kinds[i % len(kinds)], subject, setting.pattern_form, setting.insert_above)
        subjects.append(
            SubjectSpec(name=f"subject-{subject.id}", class_noun=subject.class_noun, images=files, behaviour=behaviour)
        )
        references.setdefault(
            subject.class_noun,
            [
                [str(p) for p in save_images(r.views(6, seed=0), run_dir / f"ref{r.id}")]
                for r in refs[: preset.references_per_class]
            ],
        )
    return ProtectionSpec(
        subjects=subjects,
        references=[ReferenceSet(class_noun=k, images=v) for k, v in references.items() if v],
        base_model=preset.base_model,
        knowledge=_knowledge(setting),
        losses=setting.losses,
        training=setting.training.model_copy(update={"seed": seed}),
        carrier=setting.carrier,
        encoder=setting.encoder,
    )


def _knowledge(setting: Setting) -> Knowledge:
    """What the protection knows of the attacker's prompt: white-box, the row's identifier (default "sks") and the
    default template; gray- and black-box, the universal lists."""
    if setting.knowledge in ("gray-box", "black-box"):
        return Knowledge.gray_box()
    return Knowledge() if setting.identifier is None else Knowledge(identifiers=[setting.identifier])


def class_mates(chosen: list[Chosen], which: str) -> list[Subject]:
    """The unprotected class-mates to attack: the first protected subject's, or the first protected subject's of
    each protected class (never a subject that is itself protected)."""
    if which not in ("first", "each-class"):
        raise ValueError(f"class_mates must be 'first' or 'each-class', not {which!r}")
    protected_ids = {subject.id for subject, _, _ in chosen}
    mates, classes = [], set()
    for subject, mate, _ in chosen[: 1 if which == "first" else len(chosen)]:
        if subject.class_noun in classes or mate.id in protected_ids:
            continue
        classes.add(subject.class_noun)
        mates.append(mate)
    return mates


def unprotected_case(subject: Subject, preset: Preset) -> Case:
    """An unprotected subject as the verifier attacks it: the attacker's views and 16 fresh reference views."""
    views = subject.views(preset.n_train_views, seed=0)
    return Case(f"subject-{subject.id}", subject.class_noun, views, subject.views(16, seed=1))
