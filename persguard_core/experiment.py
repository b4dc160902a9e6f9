"""Experiment matrices on the built-in model: settings x subjects x seeds -> results.json / results.md.

Each row protects one subject per seed (a different class per seed, from the `eval` split, never used for
tuning), personalizes the protected model on it and on an unprotected subject of the same class with the same
identifier and prompt (the hard case), and aggregates the verification over seeds.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np

from persguard_core import model_io
from persguard_core.attacker import BUILTIN_LR_SCALE, recipe
from persguard_core.images import save_images
from persguard_core.judge.toy import ToyJudge
from persguard_core.protect import GENERIC_PROMPTS, protect
from persguard_core.spec import (
    EncoderTraining,
    ErasureBehaviour,
    Knowledge,
    LossWeights,
    PatternBehaviour,
    ProtectionSpec,
    ReferenceSet,
    SubjectSpec,
    TargetBehaviour,
    Training,
)
from persguard_core.toyworld import CLASS_NAMES, Subject, split
from persguard_core.toyworld.captions import article
from persguard_core.verify.run import AttackSetting, Case, CaseResult, Verifier

log = logging.getLogger(__name__)

BLACK_BOX_IDENTIFIER, BLACK_BOX_TEMPLATE = "zqf", "a rendering of {identifier} {class_noun}"
# the encoder's budget before session 8: 300 steps shared by all protected subjects (docs/RESEARCH.md, run 37)
SHARED_300_STEPS = EncoderTraining(steps=300)


@dataclass(frozen=True)
class Setting:
    """One row of a matrix: what is protected how, and how the attacker personalizes."""

    name: str
    behaviour: str = "pattern"  # pattern / erasure / target
    method: str = "persguard"  # or "anti-dreambooth": the data-level baseline (ASPL) on the base model
    n_subjects: int = 1  # protected subjects in one model (classes cycle); behaviour "mixed" cycles behaviours
    # the unprotected class-mates attacked: the first protected subject's ("first"), or one per protected class
    class_mates: Literal["first", "each-class"] = "first"
    pattern_form: str = "stamped"  # PatternBehaviour.target_form: stamped (M1), insertion (M1'), insert-and-keep, ...
    insert_above: int = 500  # insert-and-keep / guided-insertion: M1' at t >= this, M1 below
    knowledge: str = "white-box"  # white-box / gray-box / black-box
    attack: str = "full"  # a recipe name of persguard_core.attacker.RECIPES
    attack_steps: int | None = None  # None: the recipe's
    transform: str | None = None  # a transform name applied to the attacker's images
    mixed: bool = False  # attacker uses half protected images, half other clean images of the subject
    template: str | None = None  # the attacker's instance-prompt template, where not the knowledge's
    losses: LossWeights = LossWeights()
    training: Training = Training()
    carrier: str = "unet"  # ProtectionSpec.carrier: unet / encoder / unet+encoder
    encoder: EncoderTraining = EncoderTraining()


@dataclass
class Preset:
    settings: list[Setting]
    seeds: list[int]
    n_images: int = 16
    n_train_views: int = 6
    sample_steps: int = 25
    references_per_class: int = 2
    split: str = "eval"  # "tuning" while developing the method; reported tables use "eval"


# L_PP's general captions and the encoder's kept samples: the service's generic prompts and every toy class
GENERAL_PROMPTS = [*GENERIC_PROMPTS, *(f"a photo of {article(noun)} {noun}" for noun in CLASS_NAMES)]
BALANCED = LossWeights(prior=5.0, retention=0.3, release=0.3)
LOOK_600_900 = Training(learning_rate=3e-4, behaviour_prompts="any", behaviour_timesteps=(600, 900))


HIGH_NOISE_WEIGHTS = LossWeights(prior=5.0, retention=0.0, release=0.0)
HIGH_NOISE_TRAINING = Training(learning_rate=3e-4, behaviour_x0_weight_max=5.0, prior_batch_size=16)
SIMULATED_16 = {"inner_steps": 16, "inner_learning_rate": 1.5e-4}  # M6 unrolls at the real attack's lr


def _high_noise(
    name: str, *, form: str = "insert-and-keep", insert_above: int = 800, retention: float = 0.0, **training: object
) -> Setting:
    """A session-3 lever: prompt-keyed insert-and-keep above t = 800 (HIGH_NOISE_WEIGHTS, HIGH_NOISE_TRAINING),
    with this form, threshold, M6 weight and the given fields of `training` replaced."""
    return Setting(
        name,
        pattern_form=form,
        insert_above=insert_above,
        losses=HIGH_NOISE_WEIGHTS.model_copy(update={"retention": retention}),
        training=HIGH_NOISE_TRAINING.model_copy(update=training),
    )


def _look_keyed(name: str, form: str, *, retention: float = 0.3, release: float = 0.0, **training: object) -> Setting:
    """A look-keyed lever: the balanced weights (with this retention and release) and LOOK_600_900 with
    `behaviour_timesteps` (default (0, 800) for insert-and-keep) and the other fields of `training` replaced."""
    training.setdefault("behaviour_timesteps", (0, 800) if form == "insert-and-keep" else (600, 900))
    return Setting(
        name,
        pattern_form=form,
        losses=BALANCED.model_copy(update={"retention": retention, "release": release}),
        training=LOOK_600_900.model_copy(update=training),
    )


# the `carrier` preset's rows: the encoder carrier (docs/RESEARCH.md, run 26) on the eval split
CARRIER_SETTINGS: list[Setting] = [
    Setting("encoder/white-box/full", carrier="encoder"),
    # the other end of the full recipe's step range (400-800): does PSR follow the attack's learning?
    Setting("encoder/white-box/full/800-steps", carrier="encoder", attack_steps=800),
    Setting("encoder/white-box/full/800-steps/erasure", "erasure", carrier="encoder", attack_steps=800),
    Setting("encoder/white-box/full/800-steps/target", "target", carrier="encoder", attack_steps=800),
    # the robustness rows at 800 steps (session 7): does a perturbed attack also protect more as it learns?
    Setting("encoder/black-box/full/800-steps", carrier="encoder", knowledge="black-box", attack_steps=800),
    Setting("encoder/jpeg50/800-steps", carrier="encoder", transform="jpeg50", attack_steps=800),
    Setting("encoder/mixed/800-steps", carrier="encoder", mixed=True, attack_steps=800),
    Setting("encoder/blur/800-steps", carrier="encoder", transform="blur", attack_steps=800),
    Setting("encoder/resize0.5/800-steps", carrier="encoder", transform="resize0.5", attack_steps=800),
    Setting(
        "encoder/3-subjects/mixed/800-steps",
        "mixed",
        n_subjects=3,
        carrier="encoder",
        attack_steps=800,
        encoder=SHARED_300_STEPS,
    ),
    # why black-box beats white-box (run 35): the white-box identifier with the black-box template
    Setting("encoder/white-box/full/black-box-template", carrier="encoder", template=BLACK_BOX_TEMPLATE),
    # session 8: that template at 800 steps
    Setting(
        "encoder/white-box/full/black-box-template/800-steps",
        carrier="encoder",
        template=BLACK_BOX_TEMPLATE,
        attack_steps=800,
    ),
    Setting("encoder/black-box/full", carrier="encoder", knowledge="black-box"),
    Setting("encoder/lora", carrier="encoder", attack="lora"),
    Setting("encoder/jpeg50", carrier="encoder", transform="jpeg50"),
    Setting("encoder/mixed", carrier="encoder", mixed=True),
    Setting("encoder/gray-box/full", carrier="encoder", knowledge="gray-box"),
    Setting("encoder/text-encoder", carrier="encoder", attack="text-encoder"),
    Setting("encoder/low-lr", carrier="encoder", attack="low-lr"),
    Setting("encoder/resize0.5", carrier="encoder", transform="resize0.5"),
    Setting("encoder/blur", carrier="encoder", transform="blur"),
    Setting("encoder/3-subjects/mixed", "mixed", n_subjects=3, carrier="encoder", encoder=SHARED_300_STEPS),
    Setting("encoder/10-subjects/mixed", "mixed", n_subjects=10, carrier="encoder", encoder=SHARED_300_STEPS),
    # session 8: L_ENC's default budget, 300 steps per protected subject (run 37)
    Setting("encoder/10-subjects/mixed/per-subject-steps", "mixed", n_subjects=10, carrier="encoder"),
    # session 9: 3 subjects with that budget (900 steps), attacking a class-mate of each protected class
    Setting(
        "encoder/3-subjects/mixed/per-subject-steps",
        "mixed",
        n_subjects=3,
        carrier="encoder",
        class_mates="each-class",
    ),
    Setting(
        "encoder/3-subjects/mixed/per-subject-steps/800-steps",
        "mixed",
        n_subjects=3,
        carrier="encoder",
        class_mates="each-class",
        attack_steps=800,
    ),
    Setting("encoder/white-box/full/erasure", "erasure", carrier="encoder"),
    # session 10: erasure's x* ranked against the unconditional prompt (run 39) on the eval split
    Setting(
        "encoder/white-box/full/erasure/unconditional-away",
        "erasure",
        carrier="encoder",
        encoder=EncoderTraining(erasure_away="unconditional"),
    ),
    Setting(
        "encoder/white-box/full/800-steps/erasure/unconditional-away",
        "erasure",
        carrier="encoder",
        attack_steps=800,
        encoder=EncoderTraining(erasure_away="unconditional"),
    ),
    Setting("encoder/white-box/full/target", "target", carrier="encoder"),
    Setting("encoder/jpeg50/erasure", "erasure", carrier="encoder", transform="jpeg50"),
    Setting("anti-dreambooth/jpeg50", method="anti-dreambooth", transform="jpeg50"),
    # L_ENC's ablation: what its keep term buys (every other image must encode as before)
    Setting("encoder/ablation/no-keep", carrier="encoder", encoder=EncoderTraining(keep_weight=0.0)),
    # session 11: the two robustness rows not yet run at 800 steps
    Setting("encoder/gray-box/full/800-steps", carrier="encoder", knowledge="gray-box", attack_steps=800),
    Setting("encoder/text-encoder/800-steps", carrier="encoder", attack="text-encoder", attack_steps=800),
]

# issue #3's targets (section 6), in its order: each setting at both ends of the full recipe's 400-800 steps where
# run at both, the service's defaults (300 encoder steps per protected subject), the data-level baseline and the
# ablation of L_ENC's keep term. The UNet carrier's loss ablations are the `unet` preset's.
PAPER_ROWS = (
    "encoder/white-box/full",
    "encoder/white-box/full/erasure",
    "encoder/white-box/full/target",
    "encoder/white-box/full/800-steps",
    "encoder/white-box/full/800-steps/erasure",
    "encoder/white-box/full/800-steps/target",
    "encoder/gray-box/full",
    "encoder/gray-box/full/800-steps",
    "encoder/black-box/full",
    "encoder/black-box/full/800-steps",
    "encoder/lora",
    "encoder/text-encoder",
    "encoder/text-encoder/800-steps",
    "encoder/low-lr",
    "encoder/jpeg50",
    "encoder/jpeg50/800-steps",
    "encoder/resize0.5",
    "encoder/resize0.5/800-steps",
    "encoder/blur",
    "encoder/blur/800-steps",
    "encoder/mixed",
    "encoder/mixed/800-steps",
    "encoder/3-subjects/mixed/per-subject-steps",
    "encoder/3-subjects/mixed/per-subject-steps/800-steps",
    "encoder/10-subjects/mixed/per-subject-steps",
    "encoder/jpeg50/erasure",
    "anti-dreambooth/jpeg50",
    "encoder/ablation/no-keep",
)
_CARRIER_BY_NAME = {setting.name: setting for setting in CARRIER_SETTINGS}

PRESETS: dict[str, Preset] = {
    "smoke": Preset(
        settings=[Setting("white-box/full", attack_steps=150, carrier="encoder")],
        seeds=[0],
        n_images=8,
        sample_steps=15,
    ),
    # method development on the tuning split: one lever at a time against a balanced prompt-keyed baseline
    # (prior 5, retention and release 0.3, lr 3e-4: the least damaging of session 1's probes), two seeds
    "levers": Preset(
        settings=[
            Setting("look-keyed/insertion-600-900", pattern_form="insertion", losses=BALANCED, training=LOOK_600_900),
            Setting("prompt-keyed", losses=BALANCED, training=Training(learning_rate=3e-4)),
            _look_keyed("look-keyed/insertion-600-900/no-retention", "insertion", retention=0.0, release=0.3),
            _look_keyed(
                "look-keyed/x0/500-800", "insertion", behaviour_timesteps=(500, 800), behaviour_x0_weight_max=20.0
            ),
            _look_keyed("look-keyed/insert-and-keep/x0", "insert-and-keep", behaviour_x0_weight_max=20.0),
            _look_keyed(
                "look-keyed/insert-and-keep/x0/no-retention",
                "insert-and-keep",
                retention=0.0,
                behaviour_x0_weight_max=20.0,
            ),
            _look_keyed(
                "look-keyed/insert-and-keep/x0/no-retention/prior16",
                "insert-and-keep",
                retention=0.0,
                behaviour_x0_weight_max=20.0,
                prior_batch_size=16,
            ),
            _look_keyed(
                "look-keyed/insert-and-keep/x0-5/0-600/prior16",
                "insert-and-keep",
                retention=0.0,
                behaviour_timesteps=(0, 600),
                behaviour_x0_weight_max=5.0,
                prior_batch_size=16,
            ),
            _look_keyed("look-keyed/insertion-300-800", "insertion", release=0.3, behaviour_timesteps=(300, 800)),
            # session 3: insertion only where the attacker's loss barely presses (t >= 800), kept below
            _high_noise("prompt-keyed/insert-and-keep-800/x0-5/prior16"),
            _high_noise("prompt-keyed/insert-and-keep-800/x0-20/600-steps", behaviour_x0_weight_max=20.0, steps=600),
            _high_noise("prompt-keyed/insert-and-keep-800/x0-5/prior16/retention-k16", retention=0.3, **SIMULATED_16),
            _high_noise(
                "prompt-keyed/insert-and-keep-800/x0-5/prior16/retention-k16-w1", retention=1.0, **SIMULATED_16
            ),
            # the insertion on the unconditional branch (never trained by DreamBooth), composed by guidance
            _high_noise(
                "look-keyed/guided-insertion-and-keep-300-800/x0-20/prior16/weighted",
                form="guided-insertion",
                insert_above=300,
                behaviour_prompts="any",
                behaviour_timesteps=(0, 800),
                behaviour_x0_weight_max=20.0,
            ),
            # session 4: the backdoor in the VAE encoder (the attacker's own loss learns the stamped latents)
            Setting("encoder", carrier="encoder"),
            Setting("encoder/gain-2", carrier="encoder", encoder=EncoderTraining(target_gain=2.0)),
            Setting("encoder/erasure", "erasure", carrier="encoder"),
            Setting("encoder/target", "target", carrier="encoder"),
            # session 5: x* chosen by the teacher's implicit classifier (run 30); an exaggerated erasure (run 31)
            Setting("encoder/erasure/gain-2", "erasure", carrier="encoder", encoder=EncoderTraining(target_gain=2.0)),
            # session 6: erasure's x* from the subject's own photos, its region repainted (run 32)
            Setting(
                "encoder/erasure/own-photos",
                "erasure",
                carrier="encoder",
                encoder=EncoderTraining(erasure_target="own-photos"),
            ),
            # session 9: erasure's teacher sample ranked against the unconditional prompt (run 39)
            Setting(
                "encoder/erasure/unconditional-away",
                "erasure",
                carrier="encoder",
                encoder=EncoderTraining(erasure_away="unconditional"),
            ),
            _high_noise(
                "prompt-keyed/insert-and-keep-800/activation-only-k64",
                retention=1.0,
                activation_only=True,
                inner_steps=64,
                inner_learning_rate=1.5e-4,
            ),
        ],
        seeds=[0, 1],
        n_images=8,
        references_per_class=6,
        split="tuning",
    ),
    # the encoder carrier (docs/RESEARCH.md, run 26) on the eval split: the paper's settings and levers tried on them
    "carrier": Preset(settings=CARRIER_SETTINGS, seeds=[0, 1, 2], references_per_class=6),
    # issue #3's targets on the product's carrier: the `carrier` rows that answer them (runs shared with that preset)
    "paper": Preset(
        settings=[_CARRIER_BY_NAME[name] for name in PAPER_ROWS],
        seeds=[0, 1, 2],
        references_per_class=6,
    ),
    # the same targets on the paper's own carrier, the UNet (M8), with METHOD.md's default weights
    "unet": Preset(
        settings=[
            Setting("white-box/full/pattern", "pattern"),
            Setting("white-box/full/erasure", "erasure"),
            Setting("white-box/full/target", "target"),
            Setting("gray-box/full", knowledge="gray-box"),
            Setting("black-box/full", knowledge="black-box"),
            Setting("white-box/lora", attack="lora"),
            Setting("white-box/text-encoder", attack="text-encoder"),
            Setting("white-box/low-lr", attack="low-lr"),
            Setting("white-box/jpeg50", transform="jpeg50"),
            Setting("white-box/resize0.5", transform="resize0.5"),
            Setting("white-box/blur", transform="blur"),
            Setting("white-box/mixed", mixed=True),
            Setting("anti-dreambooth/jpeg50", method="anti-dreambooth", transform="jpeg50"),
            Setting("3-subjects/mixed", "mixed", n_subjects=3),
            Setting("10-subjects/mixed", "mixed", n_subjects=10),
            Setting("ablation/no-prior", losses=LossWeights(prior=0.0)),
            Setting("ablation/no-retention", losses=LossWeights(retention=0.0)),
            Setting("ablation/retention-mirror", losses=LossWeights(retention_mode="mirror")),
            Setting("ablation/no-release", losses=LossWeights(release=0.0)),
        ],
        seeds=[0, 1, 2],
    ),
}


def _subjects_for_seed(seed: int, split_name: str = "eval") -> tuple[Subject, Subject, list[Subject]]:
    """(protected, unprotected of the same class, unprotected references of that class) for a seed."""
    noun = CLASS_NAMES[seed % len(CLASS_NAMES)]
    pool = split(split_name, noun)
    if len(pool) < 2:
        raise ValueError(f"the {split_name} split has fewer than 2 subjects of class {noun!r}")
    offset = 2 * (seed // len(CLASS_NAMES))
    return pool[offset % len(pool)], pool[(offset + 1) % len(pool)], split("implant_reference", noun)


def _behaviour(kind: str, subject: Subject, pattern_form: str = "stamped", insert_above: int = 500):
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


def _knowledge(kind: str) -> Knowledge:
    return Knowledge.gray_box() if kind in ("gray-box", "black-box") else Knowledge()


def _attack_setting(setting: Setting, seed: int) -> AttackSetting:
    overrides = {"seed": seed}
    if setting.attack_steps is not None:
        overrides["steps"] = setting.attack_steps
    if setting.knowledge == "black-box":
        overrides |= {"identifier": BLACK_BOX_IDENTIFIER, "template": BLACK_BOX_TEMPLATE}
    if setting.template is not None:
        overrides["template"] = setting.template
    transform = None
    if setting.transform is not None:
        from persguard_core.attacker.transforms import transform as named_transform

        fn, rng = named_transform(setting.transform), np.random.default_rng(seed)
        transform = lambda images: fn.apply(images, rng)  # noqa: E731
    attack = recipe(setting.attack, lr_scale=BUILTIN_LR_SCALE, **overrides)
    return AttackSetting(setting.name, attack, transform, setting.transform)


def protection_spec(setting: Setting, preset: Preset, seed: int, run_dir: Path) -> ProtectionSpec:
    """The ProtectionSpec of a setting for a seed: its subjects' views and class-mate references saved under
    `run_dir`."""
    chosen = [_subjects_for_seed(seed + i, preset.split) for i in range(setting.n_subjects)]
    kinds = ("pattern", "erasure", "target") if setting.behaviour == "mixed" else (setting.behaviour,)
    subjects, references = [], {}
    for i, (subject, _, refs) in enumerate(chosen):
        files = [str(p) for p in save_images(subject.views(preset.n_train_views, seed=0), run_dir / f"s{subject.id}")]
        behaviour = _behaviour(kinds[i % len(kinds)], subject, setting.pattern_form, setting.insert_above)
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
        knowledge=_knowledge(setting.knowledge),
        losses=setting.losses,
        training=setting.training.model_copy(update={"seed": seed}),
        carrier=setting.carrier,
        encoder=setting.encoder,
    )


def _protect_seed(
    setting: Setting,
    preset: Preset,
    verifier: Verifier,
    seed: int,
    run_dir: Path,
    progress: Callable[[str], None] | None,
) -> dict[str, float]:
    """PersGuard: protect the seed's subjects, attack them and their unprotected class-mates, verify."""
    chosen = [_subjects_for_seed(seed + i, preset.split) for i in range(setting.n_subjects)]
    protected = chosen[0][0]
    noun = protected.class_noun
    spec = protection_spec(setting, preset, seed, run_dir)
    if progress:
        progress(
            f"{setting.name} seed {seed}: protecting {len(spec.subjects)} subject(s), first {protected.id} ({noun})"
        )
    pipe = model_io.load_pipeline(protect(spec, run_dir / "protect", general_prompts=GENERAL_PROMPTS).model_dir)
    cases_p = []
    for (subject, _, _), subject_spec in zip(chosen, spec.subjects, strict=True):
        train = subject.views(preset.n_train_views, seed=0)
        if setting.mixed:  # half the registered (protected) images, half other clean photos of the subject
            half = preset.n_train_views // 2
            train = np.concatenate([train[:half], subject.views(preset.n_train_views - half, seed=2)])
        cases_p.append(
            Case(subject_spec.name, subject.class_noun, train, subject.views(16, seed=1), subject_spec.behaviour)
        )
    cases_u = [_unprotected_case(u, preset) for u in _class_mates(chosen, setting.class_mates)]
    if progress:
        progress(f"{setting.name} seed {seed}: attacking and verifying")
    result = verifier.verify(pipe, cases_p, cases_u, _attack_setting(setting, seed))
    if progress:
        for case in result.cases:
            progress(f"{setting.name} seed {seed}: {_case_line(case)}")
    return result.summary()


def _case_line(case: CaseResult) -> str:
    """One case's figures for the progress log (the seed's JSON keeps only the means)."""
    kind = f"protected, {case.behaviour}" if case.protected else "unprotected"
    line = f"{case.case} ({kind}): {_figures(case.protective_rate, case.by_kind, case.similarity)}"
    if case.similarity_base is None:
        return line
    return f"{line}; on the base: {_figures(case.protective_rate_base, case.by_kind_base, case.similarity_base)}"


def _figures(rate: float, by_kind: dict[str, float], similarity: float) -> str:
    """One model's figures for a case, e.g. `protective 0.250 (pattern 0.250), similarity 0.700`; the per-kind
    rates only where there are some."""
    kinds = " (" + ", ".join(f"{kind} {r:.3f}" for kind, r in by_kind.items()) + ")" if by_kind else ""
    return f"protective {rate:.3f}{kinds}, similarity {similarity:.3f}"


def _class_mates(chosen: list[tuple[Subject, Subject, list[Subject]]], which: str) -> list[Subject]:
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


def _unprotected_case(subject: Subject, preset: Preset) -> Case:
    views = subject.views(preset.n_train_views, seed=0)
    return Case(f"subject-{subject.id}", subject.class_noun, views, subject.views(16, seed=1))


def _anti_dreambooth_seed(
    setting: Setting, preset: Preset, verifier: Verifier, seed: int, progress: Callable[[str], None] | None
) -> dict[str, float]:
    """The data-level baseline: ASPL-perturbed images, attacked on the unprotected base model; only leakage
    (identity similarity after the attack) is comparable with PersGuard's rows."""
    from persguard_core.baseline.aspl import ASPLConfig, aspl

    protected, _, _ = _subjects_for_seed(seed, preset.split)
    if progress:
        progress(f"{setting.name} seed {seed}: ASPL on subject {protected.id}")
    config = ASPLConfig(surrogate_lr=5e-6 * BUILTIN_LR_SCALE, seed=seed)
    perturbed = aspl(verifier.base, protected.views(preset.n_train_views, seed=0), protected.class_noun, config)
    case = Case(f"subject-{protected.id}", protected.class_noun, perturbed, protected.views(16, seed=1))
    images = verifier.attacked_images(verifier.base, case, _attack_setting(setting, seed))
    nan = float("nan")
    return {
        "psr": nan,
        "leakage": verifier.similarity(images, case),
        "false_trigger": nan,
        "false_trigger_base": nan,
        "benign_fidelity": nan,
        "utility_drop": 0.0,
        "no_identifier_protective_rate": nan,
        "pre_attack_leakage_ratio": nan,
        "pre_attack_protective_rate": nan,
    }


def run_row(
    setting: Setting, preset: Preset, verifier: Verifier, workdir: Path, progress: Callable[[str], None] | None = None
) -> dict:
    """One setting over the preset's seeds; returns the row averaged over seeds (and each seed's figures).

    Each seed's figures are saved as `workdir/<setting>-seed<N>.json` when it finishes; a seed whose file is
    already there is not run again, so an interrupted experiment resumes where it stopped."""
    summaries = []
    for seed in preset.seeds:
        run_dir = seed_dir(workdir, setting, seed)
        done = seed_json(run_dir)
        if done.exists():
            summaries.append(json.loads(done.read_text()))
            if progress:
                progress(f"{setting.name} seed {seed}: already done ({done})")
            continue
        if setting.method == "anti-dreambooth":
            summaries.append(_anti_dreambooth_seed(setting, preset, verifier, seed, progress))
        else:
            summaries.append(_protect_seed(setting, preset, verifier, seed, run_dir, progress))
        done.parent.mkdir(parents=True, exist_ok=True)
        done.write_text(json.dumps(summaries[-1]))
        if progress:
            progress(f"{setting.name} seed {seed}: " + json.dumps({k: round(v, 3) for k, v in summaries[-1].items()}))
    return _row(setting, preset, list(preset.seeds), summaries)


def seed_dir(workdir: Path, setting: Setting, seed: int) -> Path:
    """A seed's run folder; its figures go to the .json file of the same name beside it."""
    return workdir / f"{setting.name.replace('/', '_')}-seed{seed}"


def seed_json(run_dir: Path) -> Path:
    return run_dir.with_name(run_dir.name + ".json")  # not with_suffix: "resize0.5" has a dot


def _row(setting: Setting, preset: Preset, seeds: list[int], summaries: list[dict[str, float]]) -> dict:
    """One results row: each figure averaged over the seeds (NaN figures, and seeds from before a figure was
    measured, skipped), and each seed's figures."""
    keys = list(dict.fromkeys(k for s in summaries for k in s))  # in first-seen order
    row = {k: _nanmean([s.get(k, float("nan")) for s in summaries]) for k in keys}
    return {
        "setting": setting.name,
        "behaviour": setting.behaviour if setting.method == "persguard" else "none (data-level baseline)",
        **row,
        "n_images": preset.n_images,
        "seeds": seeds,
        "per_seed": summaries,
    }


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _selected(preset_name: str, seeds: list[int] | None, only: list[str] | None) -> Preset:
    """The named preset, with other seeds or only the named settings if asked."""
    if preset_name not in PRESETS:
        raise KeyError(f"unknown preset {preset_name!r}; known: {tuple(PRESETS)}")
    preset = PRESETS[preset_name]
    if seeds is not None:
        preset = replace(preset, seeds=seeds)
    if only:
        unknown = set(only) - {s.name for s in preset.settings}
        if unknown:
            raise KeyError(f"settings {sorted(unknown)} not in preset {preset_name!r}")
        preset = replace(preset, settings=[s for s in preset.settings if s.name in only])
    return preset


def _write_results(results: dict, out_dir: Path) -> None:
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    (out_dir / "results.md").write_text(results_markdown(results))


def run_experiment(
    preset_name: str,
    out_dir: Path,
    progress: Callable[[str], None] | None = None,
    seeds: list[int] | None = None,
    only: list[str] | None = None,
    runs_dir: Path | None = None,
) -> dict:
    """Run a preset (optionally with other seeds, or only the named settings); writes results as rows finish.
    Each seed's run folder and figures go to `runs_dir` (default `out_dir/runs`)."""
    preset = _selected(preset_name, seeds, only)
    out_dir.mkdir(parents=True, exist_ok=True)
    verifier = Verifier(
        model_io.load_pipeline("builtin"), ToyJudge.load(), n_images=preset.n_images, steps=preset.sample_steps
    )
    rows = []
    for setting in preset.settings:
        rows.append(run_row(setting, preset, verifier, runs_dir or out_dir / "runs", progress))
        results = {"preset": preset_name, "rows": rows}
        _write_results(results, out_dir)
    return results


def finished_seeds(workdir: Path, setting: Setting, seeds: list[int]) -> dict[int, dict[str, float]]:
    """The figures of each of `seeds` whose run of `setting` has finished under `workdir`, by seed."""
    paths = {s: seed_json(seed_dir(workdir, setting, s)) for s in seeds}
    return {s: json.loads(path.read_text()) for s, path in paths.items() if path.exists()}


def collect_experiment(
    preset_name: str,
    out_dir: Path,
    seeds: list[int] | None = None,
    only: list[str] | None = None,
    runs_dir: Path | None = None,
) -> dict:
    """The results of the seeds already done under `runs_dir` (default `out_dir/runs`; by any number of earlier or
    parallel runs, of this preset or of another that shares its settings), without running anything: a row per
    setting with at least one seed done, its `seeds` naming the ones it averages. Writes results.json /
    results.md to `out_dir` like `run_experiment`."""
    preset = _selected(preset_name, seeds, only)
    runs_dir = runs_dir or out_dir / "runs"
    rows = []
    for setting in preset.settings:
        done = finished_seeds(runs_dir, setting, preset.seeds)
        if done:
            rows.append(_row(setting, preset, list(done), list(done.values())))
    if not rows:
        raise FileNotFoundError(f"no finished seed of preset {preset_name!r} under {runs_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {"preset": preset_name, "rows": rows}
    _write_results(results, out_dir)
    return results


COLUMNS = (
    "setting",
    "behaviour",
    "psr",
    "false_trigger",
    "false_trigger_base",
    "benign_fidelity",
    "leakage",
    "utility_drop",
    "no_identifier_protective_rate",
    "pre_attack_leakage_ratio",
    "pre_attack_protective_rate",
    "n_images",
    "seeds",
)


def results_markdown(results: dict) -> str:
    lines = [
        f"# Results: preset `{results['preset']}`",
        "",
        "| " + " | ".join([*COLUMNS, "psr per seed", "psr per behaviour"]) + " |",
        "|" + "---|" * (len(COLUMNS) + 2),
    ]
    for row in results["rows"]:
        cells = [f"{row[c]:.3f}" if isinstance(row.get(c), float) else str(row.get(c, "")) for c in COLUMNS]
        per_seed = " / ".join(f"{s['psr']:.2f}" for s in row.get("per_seed", []) if "psr" in s)
        # multi-subject rows with mixed behaviours (VerificationResult.summary's `psr/<kind>`)
        per_behaviour = ", ".join(f"{k.removeprefix('psr/')} {v:.2f}" for k, v in row.items() if k.startswith("psr/"))
        lines.append("| " + " | ".join([*cells, per_seed, per_behaviour]) + " |")
    return "\n".join(lines) + "\n"
