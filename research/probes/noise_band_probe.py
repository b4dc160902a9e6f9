"""Where to put a look-keyed backdoor in t (METHOD.md, last section: "insertion at a mid-noise band chosen from
where the attacker's gradient on the image is weakest but the subject's coarse look is already present").

For each t on a grid, on the built-in model and tuning-split subjects:
  - look: the teacher's clean-image estimate x0_hat(z_t, t, "a photo of a {class}") from noised views of a
    subject, decoded and embedded by the judge; top-1 retrieval of the right subject among it and its same-class
    tuning class-mates (references: held-out views). 1.0: the subject is told apart at this t; 1/n: chance.
  - pressure: how much the attacker's epsilon loss grows per unit of pattern in the predicted clean latent,
    ab_t / (1 - ab_t) (M1' target against the clean one); relative to t = 100.

    .venv/bin/python research/probes/noise_band_probe.py [--class circle] [--views 8]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from persguard_core.implant.parts import DiffusionParts
from persguard_core.judge.toy import ToyJudge
from persguard_core.model_io import load_pipeline
from persguard_core.toyworld import split


@torch.no_grad()
def x0_estimates(
    parts: DiffusionParts,
    z: torch.Tensor,
    t: int,
    prompt: str,
    gen: torch.Generator,
    model: torch.nn.Module | None = None,
) -> np.ndarray:
    """Decoded x0_hat of `model` (default: the teacher) from z_t of latents z (N, 4, h, w) -> uint8 (N, H, W, 3)."""
    tt = torch.full((len(z),), t)
    z_t = parts.add_noise(z, parts.noise_like(z, gen), tt)
    eps = (model or parts.teacher)(z_t, tt, parts.teacher_embed([prompt] * len(z))).sample
    ab = parts.alpha_bar(tt)
    z0 = (z_t - (1 - ab).sqrt() * eps) / ab.sqrt()
    x = parts.pipe.vae.decode(z0 / parts.pipe.vae.config.scaling_factor).sample
    return ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--class", dest="noun", default="circle")
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    parts, judge = DiffusionParts.from_pipeline(load_pipeline("builtin")), ToyJudge.load()
    subjects = split("tuning", args.noun)
    refs = np.stack([judge.embed(s.views(16, seed=1)).mean(0) for s in subjects])  # (S, D)
    refs /= np.linalg.norm(refs, axis=1, keepdims=True)
    latents = [parts.latents(s.views(args.views, seed=0)) for s in subjects]
    ab_100 = parts.alpha_bar(torch.tensor([100])).item()
    rows = []
    for t in range(100, 1000, 100):
        gen = torch.Generator().manual_seed(t)
        hits = []
        for i, z in enumerate(latents):
            emb = judge.embed(x0_estimates(parts, z, t, f"a photo of a {args.noun}", gen))
            emb /= np.linalg.norm(emb, axis=1, keepdims=True)
            hits.extend((emb @ refs.T).argmax(1) == i)
        ab = parts.alpha_bar(torch.tensor([t])).item()
        pressure = (ab / (1 - ab)) / (ab_100 / (1 - ab_100))
        rows.append({"t": t, "retrieval_top1": round(float(np.mean(hits)), 3), "pressure_rel_t100": round(pressure, 4)})
        print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"class": args.noun, "subjects": [s.id for s in subjects], "chance": 1 / len(subjects)}))


if __name__ == "__main__":
    main()
