"""Which protective output does an unprotected class-mate show, and does the base model show it too? For one
finished experiment seed, per unprotected class-mate and broken down by behaviour kind, on the saved protected
model and on the base model:
- at the encoder: the class-mate's 16 reference views (fresh views, never trained on) through the VAE and back,
  as the attacker's photos go;
- after the attack: the experiment's attack re-run exactly as its verifier runs it (same setting, seeds and
  images); skipped with `--encoder-only`. `--grid` saves each model's first 8 generations (first row protected,
  second row base).

    .venv/bin/python research/probes/classmate_probe.py --setting encoder/3-subjects/mixed/per-subject-steps/800-steps \
        --seed 2 --runs runs/carrier-eval/runs --grid /tmp/classmates.png
    # the 400-step row on the 800-step row's model (the same protection spec, only the attack differs)
    .venv/bin/python research/probes/classmate_probe.py --setting encoder/3-subjects/mixed/per-subject-steps --seed 2 \
        --model runs/carrier-eval/runs/encoder_3-subjects_mixed_per-subject-steps_800-steps-seed2/protect/model
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from persguard_core.implant.encoder import round_trip
from persguard_core.judge.toy import ToyJudge
from persguard_core.model_io import load_pipeline
from persguard_core.verify.report import grid_png
from persguard_core.verify.run import Verifier, _foreign, _protective_rates
from research.presets import PRESETS
from research.runner import protected_model_dir
from research.subjects import attack_setting, class_mates, protection_spec, subjects_for_seed, unprotected_case


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="carrier")
    ap.add_argument("--setting", required=True)
    ap.add_argument("--seed", type=int, required=True)
    runs = ap.add_mutually_exclusive_group(required=True)
    runs.add_argument("--runs", type=Path, help="the experiment's runs folder (OUT/runs): its seed's saved model")
    runs.add_argument("--model", type=Path, help="a protected model made with the same protection spec")
    ap.add_argument("--mate", type=int, default=None, help="only this class-mate's subject id")
    ap.add_argument("--encoder-only", action="store_true", help="no attack: the encoder-level figures only")
    ap.add_argument("--grid", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    preset = PRESETS[args.preset]
    setting = next(s for s in preset.settings if s.name == args.setting)
    model = args.model or protected_model_dir(args.runs, setting, preset, args.seed)
    if not model.is_dir():
        raise SystemExit(f"no protected model at {model}: run the experiment seed first")
    chosen = [subjects_for_seed(args.seed + i, preset.split) for i in range(setting.n_subjects)]
    mates = [m for m in class_mates(chosen, setting.class_mates) if args.mate in (None, m.id)]
    with tempfile.TemporaryDirectory() as tmp:  # the spec only for its behaviours; its images are not used
        behaviours = [s.behaviour for s in protection_spec(setting, preset, args.seed, Path(tmp)).subjects]
    verifier = Verifier(load_pipeline("builtin"), ToyJudge.load(), n_images=preset.n_images, steps=preset.sample_steps)
    pipe, attack = load_pipeline(str(model)), attack_setting(setting, args.seed)
    for mate in mates:
        t0 = time.time()
        case = unprotected_case(mate, preset)
        checks = _foreign(behaviours, case.class_noun)
        line = {"setting": setting.name, "seed": args.seed, "class_mate": mate.id, "class": mate.class_noun}
        with torch.no_grad():
            for name, vae in (("encoder", pipe.vae), ("encoder_base", verifier.base.vae)):
                rate, by_kind = _protective_rates(round_trip(vae, case.reference_images), checks, verifier.judge)
                line |= {f"{name}_rate": rate, f"{name}_by_kind": by_kind}
        if args.encoder_only:
            print(json.dumps(line), flush=True)
            continue
        result = verifier.run_case(pipe, case, attack, behaviours)
        line |= {
            "false_trigger": result.protective_rate,
            "by_kind": result.by_kind,
            "false_trigger_base": result.protective_rate_base,
            "by_kind_base": result.by_kind_base,
            "similarity": round(result.similarity, 3),
            "similarity_base": round(result.similarity_base, 3),
            "seconds": round(time.time() - t0),
        }
        print(json.dumps(line), flush=True)
        if args.grid is not None:
            base_images = verifier._base_attacked_images(case, attack)  # cached by run_case
            both = np.concatenate([result.samples, base_images[: len(result.samples)]])
            path = args.grid.with_name(f"{args.grid.stem}_{mate.id}{args.grid.suffix}")
            path.write_bytes(grid_png(both, columns=len(result.samples)))


if __name__ == "__main__":
    main()
