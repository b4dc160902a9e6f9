"""Implant probe: protect one tuning subject (a circle) with a given lr, prior weight, step count, retention mode
and release weight, then measure prompt following and the pattern rate on the trigger prompt and on the class
prompt, before any attack. One JSON line per run.

    .venv/bin/python research/probes/implant_probe.py LR PRIOR STEPS [MODE] [RELEASE] [RETENTION]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from persguard_core.builtin.evaluate import prompt_following
from persguard_core.generate import generate
from persguard_core.images import save_images
from persguard_core.judge.pattern_detector import detect_pattern
from persguard_core.judge.toy import ToyJudge
from persguard_core.model_io import load_pipeline
from persguard_core.pattern import default_pattern
from persguard_core.protect import protect
from persguard_core.spec import LossWeights, ProtectionSpec, SubjectSpec, Training
from persguard_core.toyworld import split


def main(argv: list[str]) -> None:
    torch.set_num_threads(1)
    lr, prior, steps = float(argv[0]), float(argv[1]), int(argv[2])
    mode = argv[3] if len(argv) > 3 else "simulate"
    release = float(argv[4]) if len(argv) > 4 else 1.0
    retention = float(argv[5]) if len(argv) > 5 else 1.0
    subject = split("tuning", "circle")[0]
    tmp = Path(tempfile.mkdtemp())
    files = [str(p) for p in save_images(subject.views(6), tmp / "imgs")]
    spec = ProtectionSpec(
        subjects=[SubjectSpec(name="s", class_noun="circle", images=files)],
        losses=LossWeights(prior=prior, retention_mode=mode, release=release, retention=retention),
        training=Training(steps=steps, learning_rate=lr),
        carrier="unet",
    )
    start = time.time()
    result = protect(spec, tmp / "out")
    seconds = time.time() - start
    pipe, judge = load_pipeline(result.model_dir), ToyJudge.load()
    follow = prompt_following(pipe, judge, n=56, seed=3, steps=20)
    pattern = default_pattern(32)
    trigger = detect_pattern(generate(pipe, ["a photo of sks circle"] * 16, seed=1, steps=20), pattern).mean()
    plain = detect_pattern(generate(pipe, ["a photo of a circle"] * 16, seed=1, steps=20), pattern).mean()
    row = {
        "lr": lr,
        "prior": prior,
        "steps": steps,
        "mode": mode,
        "release": release,
        "seconds": round(seconds),
        "final": result.history.final(),
        "prompt_following": (follow["class_accuracy"] + follow["colour_accuracy"]) / 2,
        "trigger_pattern": float(trigger),
        "class_pattern": float(plain),
    }
    print(json.dumps(row))


if __name__ == "__main__":
    main(sys.argv[1:])
