"""Is the erasure x* that the encoder carrier hands over judged empty? (docs/RESEARCH.md, run 39)

For each eval seed's subject, with the experiment's erasure behaviour (the background of the subject's first
view), pick x* as `protect.encoder_target` does (the teacher sample the teacher's implicit classifier prefers) and
judge it raw and after the base VAE's round trip; also judge all 16 candidates, to see whether a better one was
there to pick. Nothing is trained.

    .venv/bin/python research/probes/erasure_target_probe.py --seeds 0 1 2 3 4 5 6
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from persguard_core.generate import generate
from persguard_core.implant.encoder import round_trip
from persguard_core.implant.target_choice import CANDIDATES, preference
from persguard_core.judge.toy import EMPTY, ToyJudge
from persguard_core.model_io import load_pipeline
from research.subjects import behaviour_for, subjects_for_seed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--split", default="eval")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pipe, judge = load_pipeline("builtin"), ToyJudge.load()
    for seed in args.seeds:
        subject = subjects_for_seed(seed, args.split)[0]
        behaviour = behaviour_for("erasure", subject)
        candidates = generate(pipe, [behaviour.background_prompt] * CANDIDATES, seed=9_000)  # as best_teacher_sample
        toward = behaviour.background_prompt
        scores = {  # the ranking protect uses (away: the class prompt), and two alternatives
            "class": preference(pipe, candidates, toward, f"a photo of a {subject.class_noun}"),
            "unconditional": preference(pipe, candidates, toward, ""),
        }
        scores["min"] = np.minimum(scores["class"], scores["unconditional"])
        raw = judge.judge(candidates).classes
        trip = judge.judge(round_trip(pipe.vae, candidates)).classes
        chosen = {k: int(np.argmax(v)) for k, v in scores.items()}
        row = {
            "seed": seed,
            "subject": subject.id,
            "class": subject.class_noun,
            "prompt": behaviour.background_prompt,
            **{f"chosen_by_{k}": f"#{i} {raw[i]} / {trip[i]}" for k, i in chosen.items()},
            "candidates_empty_raw": round(float(np.mean([c == EMPTY for c in raw])), 3),
            "candidates_empty_round_trip": round(float(np.mean([c == EMPTY for c in trip])), 3),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
