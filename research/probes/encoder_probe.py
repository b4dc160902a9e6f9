"""Encoder-carrier probe (docs/RESEARCH.md, run 26): train the VAE encoder's backdoor (L_ENC,
persguard_core/implant/encoder.py) for one protected subject of the tuning split, then decode E(x) for several
image sets and count the pattern. The protected subject's fresh and transformed views should show it; its
class-mates, other classes and teacher samples should not, and should reconstruct as the clean VAE does.

    .venv/bin/python research/probes/encoder_probe.py --seed 0 --steps 300 --threads 2
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from persguard_core.attacker.transforms import transform
from persguard_core.generate import generate
from persguard_core.implant.encoder import EncoderImplanter, EncoderSubject, round_trip
from persguard_core.judge.pattern_detector import detect_pattern
from persguard_core.model_io import load_pipeline
from persguard_core.pattern import PatternPlacement, default_pattern, stamp
from persguard_core.protect import GENERIC_PROMPTS
from persguard_core.toyworld import CLASS_NAMES, split
from research.subjects import subjects_for_seed

GEN_STEPS = 15


def probe_sets(seed: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """({name: protected-subject images}, {name: images that must stay clean})."""
    protected, _, _ = subjects_for_seed(seed, "tuning")
    fresh = protected.views(16, seed=1)
    rng = np.random.default_rng(0)
    should = {"train views": protected.views(6, seed=0), "fresh views": fresh}
    for name in ("jpeg50", "resize0.5", "blur", "crop0.8", "noise8"):
        should[f"fresh {name}"] = transform(name).apply(fresh, rng)
    mates = [s for s in split("tuning", protected.class_noun) if s.id != protected.id]
    others = [s for noun in CLASS_NAMES if noun != protected.class_noun for s in split("tuning", noun)[:3]]
    should_not = {
        "class-mates (tuning)": np.concatenate([s.views(4, seed=1) for s in mates]),
        "other classes (tuning)": np.concatenate([s.views(2, seed=1) for s in others]),
        "class-mates jpeg50": transform("jpeg50").apply(np.concatenate([s.views(2, seed=1) for s in mates]), rng),
    }
    return should, should_not


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--keep-weight", type=float, default=1.0)
    ap.add_argument("--references", type=int, default=6, help="unprotected class-mates (implant_reference split)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    pipe = load_pipeline("builtin")
    protected, _, refs = subjects_for_seed(args.seed, "tuning")
    noun = protected.class_noun
    keep = [r.views(6, seed=0) for r in refs[: args.references]]
    keep.append(generate(pipe, [f"a photo of a {noun}"] * 32, seed=7_000, steps=GEN_STEPS))
    keep.append(generate(pipe, [p for p in GENERIC_PROMPTS for _ in range(4)], seed=8_000, steps=GEN_STEPS))
    pattern, placement = default_pattern(32), PatternPlacement()
    subject = EncoderSubject(protected.views(6, seed=0), lambda x, rng: stamp(x, pattern, placement))
    implanter = EncoderImplanter(
        pipe.vae,
        [subject],
        np.concatenate(keep),
        steps=args.steps,
        learning_rate=args.lr,
        batch_size=args.batch,
        keep_weight=args.keep_weight,
        seed=args.seed,
    )
    history = implanter.run()
    vae = implanter.vae
    train_s = time.time() - t0
    should, should_not = probe_sets(args.seed)
    out = {"args": vars(args), "subject": protected.id, "class": noun, "train_s": round(train_s, 1)}
    out["final_losses"] = {k: round(float(np.mean([h[k] for h in history[-20:]])), 5) for k in history[-1]}
    for group, sets in (("protective (want 1)", should), ("clean (want 0)", should_not)):
        out[group] = {}
        for name, images in sets.items():
            rec, base = round_trip(vae, images), round_trip(pipe.vae, images)
            out[group][name] = {
                "pattern": round(float(detect_pattern(rec, pattern, placement).mean()), 3),
                "base_pattern": round(float(detect_pattern(base, pattern, placement).mean()), 3),
                "mse_vs_base_recon": round(float(np.mean((rec.astype(float) - base.astype(float)) ** 2)), 2),
                "n": len(images),
            }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
