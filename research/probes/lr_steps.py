"""The lr question: how many DreamBooth steps does the attacker need at the diffusers learning rate (lr x1) to learn
a subject as well as the x30 recipe does in 400 steps? Full recipe with prior preservation on the unprotected base
model (the encoder carrier leaves the UNet the base's, so how well the attack learns is the base's property), the
identity similarity of the attacker's instance-prompt images to held-out views, one JSON line per attack.

    .venv/bin/python research/probes/lr_steps.py --seeds 0 1 --steps 400 1600 3200 --threads 1
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from persguard_core.attacker import BUILTIN_LR_SCALE, recipe
from persguard_core.judge.toy import ToyJudge
from persguard_core.model_io import load_pipeline
from persguard_core.verify.run import AttackSetting, Case, Verifier
from research.subjects import subjects_for_seed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--split", default="tuning")
    parser.add_argument("--steps", type=int, nargs="+", default=[400, 1600, 3200], help="attack lengths at lr x1")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = load_pipeline("builtin")
    verifier = Verifier(base, ToyJudge.load(), n_images=16)
    runs = [(BUILTIN_LR_SCALE, 400)] + [(1.0, n) for n in args.steps]
    for seed in args.seeds:
        subject = subjects_for_seed(seed, args.split)[0]
        case = Case(f"subject-{subject.id}", subject.class_noun, subject.views(6, seed=0), subject.views(16, seed=1))
        for lr_scale, steps in runs:
            start = time.time()
            attack = recipe("full", lr_scale=lr_scale, steps=steps, seed=seed)
            images = verifier.attacked_images(base, case, AttackSetting(f"full-x{lr_scale:g}-{steps}", attack))
            line = {"seed": seed, "subject": subject.id, "lr_scale": lr_scale, "steps": steps}
            line |= {"similarity": round(verifier.similarity(images, case), 3), "seconds": round(time.time() - start)}
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
