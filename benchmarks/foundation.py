"""Foundation benchmark: generation throughput of the built-in model and the quality figures of the
built-in model and the judge.

    .venv/bin/python benchmarks/foundation.py [--quick] [--json out.json] [--model DIR] [--skip-throughput]

Prints: images/s at 1 and 2 threads (25 DDIM steps, CFG 7.5, batch 32); prompt following over 224
"a photo of a {colour} {class}" generations; judge held-out head accuracy and identity top-1; DreamBooth
identity similarity before/after on three `tuning` subjects.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from persguard_core.attacker import BUILTIN_LR_SCALE, recipe
from persguard_core.builtin.evaluate import personalization, prompt_following
from persguard_core.generate import generate
from persguard_core.judge.evaluate import evaluate_judge
from persguard_core.judge.toy import ToyJudge
from persguard_core.model_io import load_pipeline
from persguard_core.toyworld import split


def throughput(pipe, threads: int, n: int = 64) -> float:
    torch.set_num_threads(threads)
    generate(pipe, ["a photo of a red circle"] * 4, steps=2)  # warm-up
    start = time.perf_counter()
    generate(pipe, ["a photo of a red circle"] * n, steps=25, batch_size=32)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images, one DreamBooth subject")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--model", default="builtin", help="a model folder to measure instead of the built-in one")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the quality figures")
    parser.add_argument("--skip-throughput", action="store_true", help="quality figures only (a busy machine)")
    args = parser.parse_args()
    pipe, judge = load_pipeline(args.model), ToyJudge.load()
    figures: dict = {"model": args.model}
    if not args.skip_throughput:
        for threads in (1, 2):
            figures[f"images_per_s_{threads}_thread"] = round(throughput(pipe, threads, 32 if args.quick else 64), 2)
        figures["thread_speedup"] = round(figures["images_per_s_2_thread"] / figures["images_per_s_1_thread"], 2)
    torch.set_num_threads(args.threads)
    figures["prompt_following"] = prompt_following(pipe, judge, n=56 if args.quick else 224)
    figures["judge"] = evaluate_judge(judge, seed=12_345, n=500 if args.quick else 2000)
    attack = recipe("full", lr_scale=BUILTIN_LR_SCALE)
    rows = []
    for subject in split("tuning")[: 1 if args.quick else 3]:
        r = personalization(pipe, judge, subject, attack)
        rows.append({"subject": subject.id, **vars(r)})
    figures["dreambooth"] = {
        "recipe": vars(attack) | {"lr_scale": BUILTIN_LR_SCALE},
        "subjects": rows,
        "mean_before": float(np.mean([r["similarity_before"] for r in rows])),
        "mean_after": float(np.mean([r["similarity_after"] for r in rows])),
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=2)


if __name__ == "__main__":
    main()
