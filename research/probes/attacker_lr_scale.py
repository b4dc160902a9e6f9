"""How the attacker recipes were scaled to the built-in model: DreamBooth at several learning-rate scales.

    .venv/bin/python research/probes/attacker_lr_scale.py [--scales 10 30 100 300] [--subjects 2]

For each scale of the "full" recipe (lr 5e-6 x scale, 400 steps, batch 4 + 4 prior images), on `tuning`
subjects: identity similarity of "a photo of sks {class}" images to the subject before and after, the share
judged as the right class, and prompt following of the tuned model on other prompts (language drift).
The chosen scale (persguard_core.attacker.recipe.BUILTIN_LR_SCALE) is the smallest one at which DreamBooth
binds the subject clearly, as the diffusers defaults do on SD.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from persguard_core import model_io
from persguard_core.attacker import dreambooth, recipe
from persguard_core.builtin.evaluate import prompt_following
from persguard_core.generate import generate
from persguard_core.judge.toy import ToyJudge
from persguard_core.toyworld import split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=float, nargs="+", default=[10, 30, 100, 300])
    parser.add_argument("--subjects", type=int, default=2)
    parser.add_argument("--recipe", default="full")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe, judge = model_io.load_pipeline("builtin"), ToyJudge.load()
    subjects = split("tuning")[: args.subjects]
    rows = []
    for scale in args.scales:
        for subject in subjects:
            attack = recipe(args.recipe, lr_scale=scale)
            prompts = [attack.instance_prompt(subject.class_noun)] * 16
            refs = subject.views(16, seed=1)
            before = generate(pipe, prompts, seed=5)
            tuned = dreambooth(pipe, subject.views(6, seed=0), subject.class_noun, attack)
            after = generate(tuned, prompts, seed=5)
            drift = prompt_following(tuned, judge, n=56, seed=3)
            rows.append(
                {
                    "scale": scale,
                    "lr": attack.learning_rate,
                    "subject": subject.id,
                    "similarity_before": float(judge.identity_similarity(before, refs).mean()),
                    "similarity_after": float(judge.identity_similarity(after, refs).mean()),
                    "class_ok_after": float(np.mean([c == subject.class_noun for c in judge.judge(after).classes])),
                    "prompt_following_after": (drift["class_accuracy"] + drift["colour_accuracy"]) / 2,
                }
            )
            print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
