"""Measure again, with the verifier's current rule, the protective output on plain prompts of finished experiment
seeds, and write it into their figures.

Until session 8, `Verifier.utility` judged every protected class's plain prompt ("a photo of a circle") with the
behaviours of *all* protected subjects. With several subjects that counted a class drawn for its own prompt as
another subject's target ("a photo of a diamond" when the circle's target is a diamond). It now judges each class's
prompt with its own subjects' behaviours (docs/RESEARCH.md, run 37). This reloads a finished seed's protected model,
runs `Verifier.utility` on it and replaces `utility_drop` and `no_identifier_protective_rate` in the seed's JSON;
everything else in it stays as measured. It prints the figures before and after.

    .venv/bin/python research/probes/recheck_plain_prompts.py --setting encoder/10-subjects/mixed --seeds 0 1 \
        --workdir runs/carrier-eval/runs --threads 1
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from persguard_core.judge.toy import ToyJudge
from persguard_core.model_io import load_pipeline
from persguard_core.verify.run import Case, Verifier
from research.presets import PRESETS
from research.runner import protected_model_dir, seed_dir, seed_json
from research.subjects import protection_spec

RECHECKED = ("utility_drop", "no_identifier_protective_rate")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="carrier")
    ap.add_argument("--setting", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", required=True)
    ap.add_argument("--workdir", type=Path, default=Path("runs/carrier-eval/runs"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    preset = PRESETS[args.preset]
    setting = next(s for s in preset.settings if s.name == args.setting)
    verifier = Verifier(load_pipeline("builtin"), ToyJudge.load(), n_images=preset.n_images, steps=preset.sample_steps)
    for seed in args.seeds:
        run_dir = seed_dir(args.workdir, setting, seed)
        figures_path = seed_json(run_dir)
        figures = json.loads(figures_path.read_text())
        spec = protection_spec(setting, preset, seed, run_dir)
        empty = np.zeros((0, 32, 32, 3), np.uint8)  # utility reads only the class and behaviour of each case
        cases = [Case(s.name, s.class_noun, empty, empty, s.behaviour) for s in spec.subjects]
        fresh = verifier.utility(load_pipeline(str(protected_model_dir(args.workdir, setting, preset, seed))), cases)
        print(json.dumps({"seed": seed, "before": {k: figures[k] for k in RECHECKED}, "after": fresh}))
        figures_path.write_text(json.dumps(figures | fresh))


if __name__ == "__main__":
    main()
