"""Does PSR follow how well the attack learns the subject? A reading of the `carrier` preset's per-seed figures.

The encoder carrier hands the attacker the protective version of the subject's photos; the attacker's own
fine-tune then learns it at the rate it learns the subject (docs/RESEARCH.md, runs 26-28 and 33). Across every
finished seed of every pattern row with the keep term (`research/results/carrier/runs/*.json`), this prints the Spearman
rank correlation between PSR and leakage (the identity similarity of the attacked model's generations to the
subject: how well the attack learned it, since the pattern is drawn beside the subject), and each seed's PSR and
leakage averaged over those rows. Erasure and target are left out: their protective output replaces the subject,
so their leakage falls as PSR rises and says nothing about the attack's learning. Runs nothing.

    .venv/bin/python research/probes/psr_vs_learning.py [--runs research/results/carrier/runs]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from research.presets import PRESETS
from research.runner import finished_seeds

LEFT_OUT = {"encoder/ablation/no-keep"}  # a class-wide stamp: PSR no longer needs the subject learned


def ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1 with ties sharing their mean rank."""
    order = values.argsort(kind="stable")
    r = np.empty(len(values))
    r[order] = np.arange(len(values))
    for v in np.unique(values):
        tied = values == v
        r[tied] = r[tied].mean()
    return r


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.corrcoef(ranks(x), ranks(y))[0, 1])


def seed_figures(runs: Path) -> list[dict]:
    """One record per finished seed of a pattern setting of the carrier preset."""
    preset = PRESETS["carrier"]
    records = []
    for setting in preset.settings:
        if setting.method != "persguard" or setting.behaviour != "pattern" or setting.name in LEFT_OUT:
            continue
        for seed, figures in finished_seeds(runs, setting, preset.seeds):
            records.append({"setting": setting.name, "seed": seed, **figures})
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("research/results/carrier/runs"))
    records = seed_figures(parser.parse_args().runs)
    psr, leakage = np.array([r["psr"] for r in records]), np.array([r["leakage"] for r in records])
    n_rows = len({r["setting"] for r in records})
    print(f"pattern: {len(records)} seeds of {n_rows} rows, Spearman rho(PSR, leakage) = {spearman(psr, leakage):.2f}")
    print("\n| seed | rows | mean PSR | mean leakage |")
    print("| --- | --- | --- | --- |")
    for seed in sorted({r["seed"] for r in records}):
        rs = [r for r in records if r["seed"] == seed]
        psr, leakage = np.mean([r["psr"] for r in rs]), np.mean([r["leakage"] for r in rs])
        print(f"| {seed} | {len(rs)} | {psr:.2f} | {leakage:.2f} |")


if __name__ == "__main__":
    main()
