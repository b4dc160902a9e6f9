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

import numpy as np

from persguard_core import model_io
from persguard_core.attacker import BUILTIN_LR_SCALE, recipe
from persguard_core.images import save_images
from persguard_core.judge.toy import ToyJudge
from persguard_core.protect import protect
from persguard_core.spec import (
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
from persguard_core.verify.run import AttackSetting, Case, Verifier

log = logging.getLogger(__name__)

BLACK_BOX_IDENTIFIER, BLACK_BOX_TEMPLATE = "zqf", "a rendering of {identifier} {class_noun}"


@dataclass(frozen=True)
class Setting:
    """One row of a matrix: what is protected how, and how the attacker personalizes."""

    name: str
    behaviour: str = "pattern"  # pattern / erasure / target
    knowledge: str = "white-box"  # white-box / gray-box / black-box
    attack: str = "full"  # a recipe name of persguard_core.attacker.RECIPES
    attack_steps: int | None = None  # None: the recipe's
    transform: str | None = None  # a transform name applied to the attacker's images
    mixed: bool = False  # attacker uses half protected images, half other clean images of the subject
    losses: LossWeights = LossWeights()
    training: Training = Training()


@dataclass
class Preset:
    settings: list[Setting]
    seeds: list[int]
    n_images: int = 16
    n_train_views: int = 6
    sample_steps: int = 25
    references_per_class: int = 2


SMOKE_TRAINING = Training(steps=150, batch_size=4, inner_steps=4)
PRESETS: dict[str, Preset] = {
    "smoke": Preset(
        settings=[Setting("white-box/full", attack_steps=150, training=SMOKE_TRAINING)],
        seeds=[0],
        n_images=8,
        sample_steps=15,
    ),
    "paper": Preset(
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
            Setting("ablation/no-prior", losses=LossWeights(prior=0.0)),
            Setting("ablation/no-retention", losses=LossWeights(retention=0.0)),
            Setting("ablation/retention-mirror", losses=LossWeights(retention_mode="mirror")),
            Setting("ablation/no-release", losses=LossWeights(release=0.0)),
        ],
        seeds=[0, 1, 2],
    ),
}


def _subjects_for_seed(seed: int) -> tuple[Subject, Subject, list[Subject]]:
    """(protected, unprotected of the same class, unprotected references of that class) for a seed."""
    noun = CLASS_NAMES[seed % len(CLASS_NAMES)]
    pool = split("eval", noun)
    if len(pool) < 2:
        raise ValueError(f"the eval split has fewer than 2 subjects of class {noun!r}")
    offset = 2 * (seed // len(CLASS_NAMES))
    return pool[offset % len(pool)], pool[(offset + 1) % len(pool)], split("implant_reference", noun)


def _behaviour(kind: str, noun: str):
    if kind == "pattern":
        return PatternBehaviour()
    if kind == "erasure":
        return ErasureBehaviour()
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
    transform = None
    if setting.transform is not None:
        from persguard_core.attacker.transforms import transform as named_transform

        fn, rng = named_transform(setting.transform), np.random.default_rng(seed)
        transform = lambda images: fn.apply(images, rng)  # noqa: E731
    return AttackSetting(setting.name, recipe(setting.attack, lr_scale=BUILTIN_LR_SCALE, **overrides), transform)


def run_row(
    setting: Setting, preset: Preset, verifier: Verifier, workdir: Path, progress: Callable[[str], None] | None = None
) -> dict:
    """Protect, attack and verify one setting over the preset's seeds; returns the aggregated row."""
    summaries = []
    for seed in preset.seeds:
        protected, unprotected, references = _subjects_for_seed(seed)
        noun = protected.class_noun
        run_dir = workdir / f"{setting.name.replace('/', '_')}-seed{seed}"
        files = [str(p) for p in save_images(protected.views(preset.n_train_views, seed=0), run_dir / "subject")]
        ref_files = [
            [str(p) for p in save_images(r.views(6, seed=0), run_dir / f"ref{r.id}")]
            for r in references[: preset.references_per_class]
        ]
        behaviour = _behaviour(setting.behaviour, noun)
        spec = ProtectionSpec(
            subjects=[SubjectSpec(name=f"subject-{protected.id}", class_noun=noun, images=files, behaviour=behaviour)],
            references=[ReferenceSet(class_noun=noun, images=ref_files)] if ref_files else [],
            knowledge=_knowledge(setting.knowledge),
            losses=setting.losses,
            training=setting.training.model_copy(update={"seed": seed}),
        )
        if progress:
            progress(f"{setting.name} seed {seed}: protecting subject {protected.id} ({noun})")
        result = protect(spec, run_dir / "protect")
        pipe = model_io.load_pipeline(result.model_dir)
        train = protected.views(preset.n_train_views, seed=0)
        if setting.mixed:
            half = preset.n_train_views // 2
            train = np.concatenate([train[:half], protected.views(preset.n_train_views - half, seed=2)])
        cases_p = [Case(spec.subjects[0].name, noun, train, protected.views(16, seed=1), behaviour)]
        cases_u = [
            Case(
                f"subject-{unprotected.id}",
                noun,
                unprotected.views(preset.n_train_views, seed=0),
                unprotected.views(16, seed=1),
            )
        ]
        if progress:
            progress(f"{setting.name} seed {seed}: attacking and verifying")
        summaries.append(verifier.verify(pipe, cases_p, cases_u, _attack_setting(setting, seed)).summary())
    row = {k: float(np.nanmean([s[k] for s in summaries])) for k in summaries[0]}
    return {
        "setting": setting.name,
        "behaviour": setting.behaviour,
        **row,
        "n_images": preset.n_images,
        "seeds": list(preset.seeds),
        "per_seed": summaries,
    }


def run_experiment(
    preset_name: str, out_dir: Path, progress: Callable[[str], None] | None = None, seeds: list[int] | None = None
) -> dict:
    if preset_name not in PRESETS:
        raise KeyError(f"unknown preset {preset_name!r}; known: {tuple(PRESETS)}")
    preset = PRESETS[preset_name]
    if seeds is not None:
        preset = replace(preset, seeds=seeds)
    out_dir.mkdir(parents=True, exist_ok=True)
    verifier = Verifier(
        model_io.load_pipeline("builtin"), ToyJudge.load(), n_images=preset.n_images, steps=preset.sample_steps
    )
    rows = []
    for setting in preset.settings:
        rows.append(run_row(setting, preset, verifier, out_dir / "runs", progress))
        results = {"preset": preset_name, "rows": rows}
        (out_dir / "results.json").write_text(json.dumps(results, indent=2))
        (out_dir / "results.md").write_text(results_markdown(results))
    return results


COLUMNS = (
    "setting",
    "behaviour",
    "psr",
    "false_trigger",
    "benign_fidelity",
    "leakage",
    "utility_drop",
    "no_identifier_protective_rate",
    "pre_attack_leakage_ratio",
    "n_images",
    "seeds",
)


def results_markdown(results: dict) -> str:
    lines = [
        f"# Results: preset `{results['preset']}`",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for row in results["rows"]:
        cells = [f"{row[c]:.3f}" if isinstance(row.get(c), float) else str(row.get(c, "")) for c in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
