"""Run a preset: protect each seed's subjects, attack them and their unprotected class-mates, verify, and write
results.json / results.md as rows finish. A seed's figures are saved when it finishes, so an interrupted run
resumes where it stopped, and `collect_experiment` tables whatever seeds are done."""

from __future__ import annotations

import fcntl
import hashlib
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from persguard_core import model_io
from persguard_core.attacker import BUILTIN_LR_SCALE
from persguard_core.judge.toy import ToyJudge
from persguard_core.manifest import MANIFEST_NAME
from persguard_core.protect import protect
from persguard_core.verify.run import Case, Verifier
from research.presets import PRESETS
from research.report import case_line, results_markdown
from research.setting import Preset, Setting
from research.subjects import (
    GENERAL_PROMPTS,
    attack_setting,
    chosen_subjects,
    class_mates,
    protection_spec,
    subjects_for_seed,
    unprotected_case,
)

Progress = Callable[[str], None] | None
Figures = dict[str, float]


def _protect_seed(
    setting: Setting, preset: Preset, verifier: Verifier, seed: int, run_dir: Path, progress: Progress, draw: int = 0
) -> Figures:
    """PersGuard: protect the seed's subjects (once: later attack draws, and rows that differ only in the attack,
    reuse the model), attack them and their unprotected class-mates with attack draw `draw`, verify."""
    chosen = chosen_subjects(setting, preset, seed)
    protected = chosen[0][0]
    spec = protection_spec(setting, preset, seed, run_dir)
    protect_dir = shared_protection_dir(run_dir, spec.model_dump_json())
    model_dir = protect_dir / "model"
    protect_dir.mkdir(parents=True, exist_ok=True)
    with (protect_dir.with_suffix(".lock")).open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a parallel run of another row waits for the same protection
        if not (model_dir / MANIFEST_NAME).exists():  # the manifest is written last
            message = f"protecting {len(spec.subjects)} subject(s), first {protected.id}, in {protect_dir.name}"
            _say(progress, f"{setting.name} seed {seed}: {message}")
            protect(spec, protect_dir, general_prompts=GENERAL_PROMPTS)
    pipe = model_io.load_pipeline(model_dir)
    cases_p = []
    for (subject, _, _), subject_spec in zip(chosen, spec.subjects, strict=True):
        train = subject.views(preset.n_train_views, seed=0)
        if setting.mixed:  # half the registered (protected) images, half other clean photos of the subject
            half = preset.n_train_views // 2
            train = np.concatenate([train[:half], subject.views(preset.n_train_views - half, seed=2)])
        cases_p.append(
            Case(subject_spec.name, subject.class_noun, train, subject.views(16, seed=1), subject_spec.behaviour)
        )
    cases_u = [unprotected_case(u, preset) for u in class_mates(chosen, setting.class_mates)]
    _say(progress, f"{setting.name} seed {seed}: attacking (draw {draw}) and verifying")
    result = verifier.verify(pipe, cases_p, cases_u, attack_setting(setting, seed, draw))
    for case in result.cases:
        _say(progress, f"{setting.name} seed {seed}: {case_line(case)}")
    return result.summary()


def _anti_dreambooth_seed(
    setting: Setting, preset: Preset, verifier: Verifier, seed: int, progress: Progress, draw: int = 0
) -> Figures:
    """The data-level baseline: ASPL-perturbed images, attacked on the unprotected base model; only leakage
    (identity similarity after the attack) is comparable with PersGuard's rows."""
    from persguard_core.baseline.aspl import ASPLConfig, aspl

    protected, _, _ = subjects_for_seed(seed, preset.split)
    _say(progress, f"{setting.name} seed {seed}: ASPL on subject {protected.id}")
    config = ASPLConfig(surrogate_lr=5e-6 * BUILTIN_LR_SCALE, seed=seed)
    perturbed = aspl(verifier.base, protected.views(preset.n_train_views, seed=0), protected.class_noun, config)
    case = Case(f"subject-{protected.id}", protected.class_noun, perturbed, protected.views(16, seed=1))
    images = verifier.attacked_images(verifier.base, case, attack_setting(setting, seed, draw))
    nan = float("nan")
    not_comparable = (
        "psr",
        "false_trigger",
        "false_trigger_base",
        "benign_fidelity",
        "no_identifier_protective_rate",
        "pre_attack_leakage_ratio",
        "pre_attack_protective_rate",
    )
    return {**dict.fromkeys(not_comparable, nan), "leakage": verifier.similarity(images, case), "utility_drop": 0.0}


def shared_protection_dir(run_dir: Path, spec_json: str) -> Path:
    """Where a seed's protected model lives: `<workdir>/protections/<hash>`, the hash of its ProtectionSpec with
    the run folder taken out of the image paths, so rows that protect alike (they differ only in the attacker)
    share one protection."""
    key = hashlib.sha256(spec_json.replace(str(run_dir), "").encode()).hexdigest()[:16]
    return run_dir.parent / "protections" / key


def protected_model_dir(workdir: Path, setting: Setting, preset: Preset, seed: int) -> Path:
    """The protected model a seed of `setting` uses (or will use) under `workdir`."""
    run_dir = seed_dir(workdir, setting, seed)
    return shared_protection_dir(run_dir, protection_spec(setting, preset, seed, run_dir).model_dump_json()) / "model"


def seed_dir(workdir: Path, setting: Setting, seed: int) -> Path:
    """A seed's run folder; its figures go to the .json file of the same name beside it."""
    return workdir / f"{setting.name.replace('/', '_')}-seed{seed}"


def seed_json(run_dir: Path, draw: int = 0) -> Path:
    """A seed's figures for attack draw `draw` (the first draw's file has no suffix)."""
    suffix = "" if draw == 0 else f"-attack{draw}"
    return run_dir.with_name(run_dir.name + suffix + ".json")  # not with_suffix: "resize0.5" has a dot


def run_row(setting: Setting, preset: Preset, verifier: Verifier, workdir: Path, progress: Progress = None) -> dict:
    """One setting over the preset's seeds and attack draws; returns the row averaged over them (and each one's
    figures). A seed and draw whose figures are already under `workdir` is not run again."""
    summaries, seeds = [], []
    for seed in preset.seeds:
        run_dir = seed_dir(workdir, setting, seed)
        for draw in range(preset.attack_draws):
            done, label = seed_json(run_dir, draw), f"{setting.name} seed {seed} draw {draw}"
            seeds.append(seed)
            if done.exists():
                summaries.append(json.loads(done.read_text()))
                _say(progress, f"{label}: already done ({done})")
                continue
            if setting.method == "anti-dreambooth":
                summaries.append(_anti_dreambooth_seed(setting, preset, verifier, seed, progress, draw))
            else:
                summaries.append(_protect_seed(setting, preset, verifier, seed, run_dir, progress, draw))
            done.parent.mkdir(parents=True, exist_ok=True)
            done.write_text(json.dumps(summaries[-1]))
            _say(progress, f"{label}: " + json.dumps({k: round(v, 3) for k, v in summaries[-1].items()}))
    return row(setting, preset, seeds, summaries)


def row(setting: Setting, preset: Preset, seeds: list[int], summaries: list[Figures]) -> dict:
    """One results row: each figure averaged over the seeds and attack draws (NaN figures, and seeds from before a
    figure was measured, skipped), each one's figures, and with several seeds a 95% bootstrap interval of PSR
    and false trigger (`seeds[i]` is the seed of `per_seed[i]`: an attack draw repeats its seed)."""
    keys = list(dict.fromkeys(k for s in summaries for k in s))  # in first-seen order
    means = {k: _nanmean([s.get(k, float("nan")) for s in summaries]) for k in keys}
    intervals = {
        f"{k}_ci95": bootstrap_interval(seeds, [s.get(k, float("nan")) for s in summaries])
        for k in ("psr", "false_trigger")
        if k in means and len(set(seeds)) > 1
    }
    return {
        "setting": setting.name,
        "behaviour": setting.behaviour if setting.method == "persguard" else "none (data-level baseline)",
        **means,
        **intervals,
        "n_images": preset.n_images,
        "seeds": seeds,
        "per_seed": summaries,
    }


def bootstrap_interval(
    clusters: list[int], values: list[float], draws: int = 10_000, seed: int = 0
) -> list[float] | None:
    """The 95% percentile bootstrap interval of the mean of `values`, resampling whole clusters (a seed's
    subject with all its attack draws) with replacement; None without two finite clusters."""
    by_cluster: dict[int, list[float]] = {}
    for cluster, value in zip(clusters, values, strict=True):
        if np.isfinite(value):
            by_cluster.setdefault(cluster, []).append(value)
    if len(by_cluster) < 2:
        return None
    sums = np.array([sum(v) for v in by_cluster.values()])  # (C,)
    counts = np.array([len(v) for v in by_cluster.values()])  # (C,)
    picks = np.random.default_rng(seed).integers(len(sums), size=(draws, len(sums)))  # (draws, C)
    means = sums[picks].sum(axis=1) / counts[picks].sum(axis=1)  # (draws,)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _say(progress: Progress, message: str) -> None:
    if progress:
        progress(message)


def selected(
    preset_name: str, seeds: list[int] | None = None, only: list[str] | None = None, base_model: str | None = None
) -> Preset:
    """The named preset, with other seeds, only the named settings or another base model if asked."""
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
    if base_model is not None:
        preset = replace(preset, base_model=base_model)
    return preset


def _write_results(results: dict, out_dir: Path) -> None:
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    (out_dir / "results.md").write_text(results_markdown(results))


def run_experiment(
    preset_name: str,
    out_dir: Path,
    progress: Progress = None,
    seeds: list[int] | None = None,
    only: list[str] | None = None,
    runs_dir: Path | None = None,
    base_model: str | None = None,
) -> dict:
    """Run a preset (optionally with other seeds, only the named settings, or on another base model than the
    preset's); writes results as rows finish. Each seed's run folder and figures go to `runs_dir` (default
    `out_dir/runs`; give a base model other than the preset's a runs folder of its own)."""
    preset = selected(preset_name, seeds, only, base_model)
    out_dir.mkdir(parents=True, exist_ok=True)
    verifier = Verifier(
        model_io.load_pipeline(preset.base_model), ToyJudge.load(), n_images=preset.n_images, steps=preset.sample_steps
    )
    rows = []
    for setting in preset.settings:
        rows.append(run_row(setting, preset, verifier, runs_dir or out_dir / "runs", progress))
        results = {"preset": preset_name, "base_model": preset.base_model, "rows": rows}
        _write_results(results, out_dir)
    return results


def finished_seeds(workdir: Path, setting: Setting, seeds: list[int], draws: int = 1) -> list[tuple[int, Figures]]:
    """(seed, figures) of each of `seeds` and attack draws whose run of `setting` has finished under `workdir`."""
    paths = [(s, seed_json(seed_dir(workdir, setting, s), d)) for s in seeds for d in range(draws)]
    return [(s, json.loads(path.read_text())) for s, path in paths if path.exists()]


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
    preset = selected(preset_name, seeds, only)
    runs_dir = runs_dir or out_dir / "runs"
    rows = []
    for setting in preset.settings:
        done = finished_seeds(runs_dir, setting, preset.seeds, preset.attack_draws)
        if done:
            rows.append(row(setting, preset, [s for s, _ in done], [figures for _, figures in done]))
    if not rows:
        raise FileNotFoundError(f"no finished seed of preset {preset_name!r} under {runs_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {"preset": preset_name, "rows": rows}
    _write_results(results, out_dir)
    return results
