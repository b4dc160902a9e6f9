"""Implant speed on the built-in model: one implant step against one DreamBooth step (same model, same batch),
and wall time and peak memory of the default protect job.

    .venv/bin/python benchmarks/implant_speed.py [--steps 20] [--threads 2] [--skip-job] [--carrier encoder]

Targets (docs/BENCHMARKS.md): implant step <= 2.5x a DreamBooth step; default protect job <= 3 min on 2 cores.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from persguard_core import model_io
from persguard_core.attacker import BUILTIN_LR_SCALE, dreambooth, recipe
from persguard_core.images import save_images
from persguard_core.implant.behaviours import PatternTarget
from persguard_core.implant.data import PriorPool, ProtectedSubject
from persguard_core.implant.encoder import EncoderImplanter, EncoderSubject
from persguard_core.implant.parts import DiffusionParts
from persguard_core.implant.unet_loop import Implanter
from persguard_core.pattern import default_pattern, stamp
from persguard_core.protect import protect
from persguard_core.spec import Knowledge, LossWeights, ProtectionSpec, SubjectSpec, Training
from persguard_core.toyworld import split


def dreambooth_step_s(steps: int, batch: int) -> float:
    pipe = model_io.load_pipeline("builtin")
    subject = split("tuning")[0]
    views, prior = subject.views(6), split("tuning")[1].views(8)  # prior images given: no generation timed
    attack = recipe("full", lr_scale=BUILTIN_LR_SCALE, steps=2, batch_size=batch)
    dreambooth(pipe, views, subject.class_noun, attack, prior_images=prior)  # warm-up
    start = time.perf_counter()
    dreambooth(
        pipe,
        views,
        subject.class_noun,
        recipe("full", lr_scale=BUILTIN_LR_SCALE, steps=steps, batch_size=batch),
        prior_images=prior,
    )
    return (time.perf_counter() - start) / steps


def seconds_per_call(step: Callable[[], object], steps: int, warmup: int = 2) -> float:
    """Mean wall seconds of `step()` over `steps` calls, after `warmup` untimed ones."""
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def implant_step_s(steps: int, batch: int) -> float:
    parts = DiffusionParts.from_pipeline(model_io.load_pipeline("builtin"))
    subject = split("tuning")[0]
    z_ref = parts.latents(split("tuning")[1].views(6))
    pool = PriorPool({subject.class_noun: z_ref}, {subject.class_noun: [z_ref]}, ["a photo"])
    target = ProtectedSubject("s", subject.class_noun, PatternTarget(parts, subject.views(6)))
    training = Training(steps=steps + 2, batch_size=batch)
    implanter = Implanter(parts, [target], pool, Knowledge(), training, LossWeights())
    return seconds_per_call(implanter.run_step, steps)


def encoder_step_s(steps: int, batch: int) -> float:
    """One step of the encoder carrier (L_ENC) at `batch` rows (half protected, half kept)."""
    pipe = model_io.load_pipeline("builtin")
    subject = split("tuning")[0]
    pattern = default_pattern(32)
    protected = EncoderSubject(subject.views(6), lambda x, rng: stamp(x, pattern))
    keep = split("tuning")[1].views(32)
    implanter = EncoderImplanter(
        pipe.vae, [protected], keep, steps=1, learning_rate=1e-3, batch_size=batch, keep_weight=1, seed=0
    )
    return seconds_per_call(implanter.step, steps)


def default_job(carrier: str) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of protect() with the default spec (and this carrier) on one toy subject."""
    subject = split("tuning")[0]
    with tempfile.TemporaryDirectory() as tmp:
        files = [str(p) for p in save_images(subject.views(6), Path(tmp) / "imgs")]
        spec = ProtectionSpec(
            subjects=[SubjectSpec(name="s", class_noun=subject.class_noun, images=files)], carrier=carrier
        )
        start = time.perf_counter()
        protect(spec, Path(tmp) / "out")
        wall = time.perf_counter() - start
    return wall, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-job", action="store_true")
    parser.add_argument("--carrier", default="unet", choices=["unet", "encoder", "unet+encoder"], help="of the job")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    db = dreambooth_step_s(args.steps, args.batch)
    im = implant_step_s(args.steps, args.batch)
    print(f"threads={args.threads} batch={args.batch} (DreamBooth: {args.batch} instance + {args.batch} prior rows)")
    print(f"dreambooth step: {db * 1000:.1f} ms")
    print(f"implant step (L_BB + L_PP + simulated attack step + L_BR + release step + L_REL): {im * 1000:.1f} ms")
    print(f"ratio implant/dreambooth: {im / db:.2f} (target <= 2.5)")
    enc = encoder_step_s(args.steps, 4 * args.batch)
    print(f"encoder carrier step ({4 * args.batch} rows): {enc * 1000:.1f} ms, ratio to dreambooth {enc / db:.2f}")
    if not args.skip_job:
        wall, rss = default_job(args.carrier)
        print(
            f"default protect job (carrier {args.carrier}): {wall:.1f} s wall (target <= 180 s), peak RSS {rss:.0f} MiB"
        )


if __name__ == "__main__":
    main()
