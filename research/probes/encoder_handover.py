"""What the encoder carrier hands over, subject by subject, in a model that protects several (docs/RESEARCH.md,
run 37). For each protected subject of an experiment setting's seed, decode E(x) of 16 fresh views and count the
subject's protective output (pattern detected, judged empty, judged the target class), and the same for its
unprotected class-mate (which should show none). No attack is run: this is the encoder's side of the hand-over,
the most that the attacker's fine-tune can learn.

For the attacker's own photos of each protected subject it also prints how exactly and how alike the encoder hands
them over (docs/RESEARCH.md, run 48): `gap`, the mean relative distance of each photo's latent E(x) to the base
encoder's latent of its protective version E0(x*), and `spread`, their mean distance to their own mean, relative
to their mean norm (`spread_base`: the same for the base encoder's E0(x), the photos' natural variety).

Either probe the protected model of a finished experiment seed, or protect afresh with another encoder budget:

    .venv/bin/python research/probes/encoder_handover.py --setting encoder/10-subjects/mixed --seed 0 \
        --model runs/carrier-eval/runs/encoder_10-subjects_mixed-seed0/protect/model
    .venv/bin/python research/probes/encoder_handover.py --setting encoder/10-subjects/mixed --seed 0 --steps 1500
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from persguard_core.diffusion import encode_latents
from persguard_core.implant.encoder import round_trip
from persguard_core.judge.toy import ToyJudge
from persguard_core.model_io import load_pipeline
from persguard_core.protect import encoder_target, protect
from persguard_core.verify.protective import protective_output
from research.presets import PRESETS
from research.subjects import GENERAL_PROMPTS, protection_spec, subjects_for_seed


def _relative_distance(z: torch.Tensor, reference: torch.Tensor) -> float:
    """mean_i ||z_i - reference_i|| / mean_i ||z_i|| for (N, ...) tensors (reference broadcast to z's shape)."""
    return float((z - reference).flatten(1).norm(dim=1).mean() / z.flatten(1).norm(dim=1).mean())


def exactness(pipe, base, views: np.ndarray, to_target) -> dict[str, float]:
    """`gap`, `spread` and `spread_base` (module docstring) of the attacker's photos `views` on the protected
    `pipe` against the `base` pipeline (latent means; both scaled alike, so the ratios are the unscaled ones)."""
    z, z_base = encode_latents(pipe.vae, views), encode_latents(base.vae, views)
    z_star = encode_latents(base.vae, to_target(views, np.random.default_rng(0)))
    return {
        "gap": round(_relative_distance(z, z_star), 4),
        "spread": round(_relative_distance(z, z.mean(0, keepdim=True)), 4),
        "spread_base": round(_relative_distance(z_base, z_base.mean(0, keepdim=True)), 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="carrier")
    ap.add_argument("--setting", required=True)
    ap.add_argument("--seed", type=int, default=0)
    source = ap.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=Path, help="a protected model of this setting and seed")
    source.add_argument("--steps", type=int, help="protect afresh with this many encoder steps in all")
    ap.add_argument("--save-model", type=Path, help="with --steps: protect into this folder and keep it")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    preset = PRESETS[args.preset]
    setting = next(s for s in preset.settings if s.name == args.setting)
    chosen = [subjects_for_seed(args.seed + i, preset.split) for i in range(setting.n_subjects)]
    with tempfile.TemporaryDirectory() as tmp:
        if args.steps is not None:
            setting = replace(setting, encoder=setting.encoder.model_copy(update={"steps": args.steps}))
        spec = protection_spec(setting, preset, args.seed, Path(tmp))
        t0 = time.time()
        out = args.save_model or Path(tmp) / "protect"
        model = args.model or protect(spec, out, general_prompts=GENERAL_PROMPTS).model_dir
        seconds = round(time.time() - t0)
        pipe, base, judge = load_pipeline(str(model)), load_pipeline("builtin"), ToyJudge.load()
        vae = pipe.vae
        rows = []
        with torch.no_grad():
            for (subject, mate, _), subject_spec in zip(chosen, spec.subjects, strict=True):
                behaviour = subject_spec.behaviour
                own = protective_output(round_trip(vae, subject.views(16, seed=1)), behaviour, judge)
                other = protective_output(round_trip(vae, mate.views(16, seed=1)), behaviour, judge)
                rows.append({"subject": subject.id, "class": subject.class_noun, "behaviour": behaviour.kind})
                rows[-1] |= {"handed_over": float(own.mean()), "class_mate": float(other.mean())}
                to_target = encoder_target(base, behaviour, subject.class_noun, setting.encoder.erasure_away)
                rows[-1] |= exactness(pipe, base, subject.views(preset.n_train_views, seed=0), to_target)
                print(json.dumps(rows[-1]), flush=True)
    by_kind = {
        kind: float(np.mean([r["handed_over"] for r in rows if r["behaviour"] == kind]))
        for kind in sorted({r["behaviour"] for r in rows})
    }
    mean = {k: round(float(np.mean([r[k] for r in rows])), 3) for k in ("handed_over", "class_mate")}
    print(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "protect_seconds": seconds} | mean | by_kind))


if __name__ == "__main__":
    main()
