"""Erasure's x* from the subject's own photos (docs/RESEARCH.md, run 32): how well the teacher's DiffEdit mask
(persguard_core/implant/subject_mask.py) covers the subject, and how empty the repainted photos look to the judge.

For the first 6 views of each seed's protected subject (tuning and eval splits), against the same scenes rendered
without the subject: the share of the subject's pixels inside the mask, the share of the image masked, the pixel
error of the repainted photo to the empty scene relative to the photo's own, and the judge's "empty" verdicts on
the repainted photos after the VAE round trip (what the attacker's fine-tune is shown). The same verdicts on the
truly empty scenes, raw and after the round trip, are the ceiling any erasure can reach under this judge.

    .venv/bin/python research/probes/erasure_fill_probe.py --seeds 0 1 2 3 4 5 --threads 1
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import numpy as np
import torch

from persguard_core.images import fill_from_surroundings
from persguard_core.implant.encoder import round_trip
from persguard_core.implant.subject_mask import subject_masks
from persguard_core.judge.toy import EMPTY, ToyJudge
from persguard_core.model_io import load_pipeline
from persguard_core.toyworld.render import render
from research.subjects import behaviour_for, subjects_for_seed


def probe_subject(pipe, judge: ToyJudge, seed: int, split: str) -> dict:
    subject, _, _ = subjects_for_seed(seed, split)
    scenes = subject.view_scenes(6, seed=0)
    photos = np.stack([render(s) for s in scenes])
    empty = np.stack([render(replace(s, appearance=None)) for s in scenes])
    truth = (photos != empty).any(-1)  # (6, H, W) the subject's pixels
    prompt = behaviour_for("erasure", subject).background_prompt
    masks = subject_masks(pipe, photos, subject.class_noun, prompt)
    filled = fill_from_surroundings(photos, masks, np.random.default_rng(0))

    def error(images: np.ndarray) -> float:
        return float(np.abs(images.astype(float) - empty).mean())

    def judged_empty(images: np.ndarray) -> int:
        return sum(c == EMPTY for c in judge.judge(images).classes)

    return {
        "split": split,
        "seed": seed,
        "subject": f"{subject.class_noun} {subject.id}",
        "background_prompt": prompt,
        "subject_covered": round(float((masks & truth).sum() / truth.sum()), 3),
        "image_masked": round(float(masks.mean()), 3),
        "error_ratio": round(error(filled) / error(photos), 3),
        "filled_judged_empty_after_vae": judged_empty(round_trip(pipe.vae, filled)),
        "empty_scene_judged_empty_after_vae": judged_empty(round_trip(pipe.vae, empty)),
        "empty_scene_judged_empty_raw": judged_empty(empty),
        "n": len(photos),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pipe, judge = load_pipeline("builtin"), ToyJudge.load()
    rows = [probe_subject(pipe, judge, seed, split) for split in ("tuning", "eval") for seed in args.seeds]
    for row in rows:
        print(json.dumps(row))
    n = sum(r["n"] for r in rows)
    total = {k: sum(r[k] for r in rows) / n for k in rows[0] if "judged_empty" in k}
    total |= {k: round(float(np.mean([r[k] for r in rows])), 3) for k in ("subject_covered", "image_masked")}
    print("summary " + json.dumps({k: round(v, 3) for k, v in total.items()}))


if __name__ == "__main__":
    main()
