"""How much of the pattern can the attacker's DreamBooth learn at all? Attack a model with the experiment's full
recipe on a tuning subject's views and count the pattern in the trigger prompt's generations, printing the
detector's scores. `--stamped` attacks with the stamped views themselves: the upper bound of any data-path
carrier (the encoder carrier gives the attacker's UNet the stamped latents; it cannot beat stamped images).
Saves a grid of the generations beside the JSON line. `--behaviour erasure|target` attacks with the image the
encoder carrier hands over for that behaviour (`protect.encoder_target`: one teacher sample of the background or
target prompt, for every view) and counts the judge's verdict instead of the pattern.

    .venv/bin/python research/probes/carrier_bound.py --seed 0 --stamped --grid /tmp/bound.png     # the bound
    .venv/bin/python research/probes/carrier_bound.py --seed 0 --model MODEL_DIR --grid /tmp/enc.png # a model
    .venv/bin/python research/probes/carrier_bound.py --seed 0 --behaviour target --stamped          # target's bound

`--attack-seed K` runs the same attack with another seed (default: --seed, as the experiment does), to see how much
of a subject's figure is the attack's own randomness (docs/RESEARCH.md, run 49).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from persguard_core.judge.pattern_detector import DEFAULT_THRESHOLD, pattern_scores
from persguard_core.judge.toy import ToyJudge
from persguard_core.model_io import load_pipeline
from persguard_core.pattern import default_pattern, stamp
from persguard_core.protect import encoder_target
from persguard_core.verify.protective import protective_output
from persguard_core.verify.report import grid_png
from persguard_core.verify.run import Case, Verifier
from research.setting import Setting
from research.subjects import attack_setting, behaviour_for, subjects_for_seed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", default="tuning", help="subject split (tuning or eval)")
    ap.add_argument("--model", default="builtin")
    ap.add_argument("--stamped", action="store_true", help="attack with the protective views (the bound)")
    ap.add_argument("--behaviour", default="pattern", choices=("pattern", "erasure", "target"))
    ap.add_argument("--unprotected", action="store_true", help="attack the seed's unprotected class-mate instead")
    ap.add_argument("--steps", type=int, default=None, help="attack steps (default: the recipe's)")
    ap.add_argument("--attack-seed", type=int, default=None, help="the attack's seed (default: --seed)")
    ap.add_argument("--n-images", type=int, default=16)
    ap.add_argument("--grid", default=None)
    ap.add_argument("--save", default=None, help="write the generations to this .npy file")
    ap.add_argument(
        "--searches", type=int, nargs="*", default=[2], help="detector search radii (px) to report; 2 is the judge's"
    )
    ap.add_argument("--cells", type=int, default=None, help="checker cells per side (default: the default pattern's)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    protected, unprotected, _ = subjects_for_seed(args.seed, args.split)
    subject = unprotected if args.unprotected else protected
    pattern = default_pattern(32, cells=args.cells)
    base = load_pipeline("builtin")
    behaviour = behaviour_for(args.behaviour, subject)
    views = subject.views(6, seed=0)
    if args.stamped and args.behaviour == "pattern":
        views = stamp(views, pattern)
    elif args.stamped:
        views = encoder_target(base, behaviour, subject.class_noun)(views, None)
    case = Case(f"subject-{subject.id}", subject.class_noun, views, subject.views(16, seed=1))
    judge = ToyJudge.load()
    verifier = Verifier(base, judge, n_images=args.n_images)
    attack_seed = args.seed if args.attack_seed is None else args.attack_seed
    setting = attack_setting(Setting("bound", attack_steps=args.steps), attack_seed)
    images = verifier.attacked_images(load_pipeline(args.model), case, setting)
    scores = pattern_scores(images, pattern)
    if args.grid:
        Path(args.grid).write_bytes(grid_png(images))
    if args.save:
        np.save(args.save, images)
    out = {
        "args": vars(args),
        "subject": subject.id,
        "pattern_rate": round(float((scores >= DEFAULT_THRESHOLD).mean()), 3),
        "scores": [round(float(s), 2) for s in scores],
        "rate_by_search": {
            r: round(float((pattern_scores(images, pattern, search=r) >= DEFAULT_THRESHOLD).mean()), 3)
            for r in args.searches
        },
        "protective_rate": round(float(protective_output(images, behaviour, judge).mean()), 3),
        "judged_classes": judge.judge(images).classes,
        "identity_similarity": round(verifier.similarity(images, case), 3),
        "seconds": round(time.time() - t0, 1),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
