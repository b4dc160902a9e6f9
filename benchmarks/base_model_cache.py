"""What the per-process base-model cache saves a job: loading (+ hashing) the base model versus a cache hit.

    python benchmarks/base_model_cache.py                 # the built-in model
    python benchmarks/base_model_cache.py --model PATH    # any diffusers folder
    python benchmarks/base_model_cache.py --sd21          # an SD-2.1-base-size model with random weights (~5 GB
                                                          # written to a temporary folder first)
    python benchmarks/base_model_cache.py --job           # also a short real implantation without and with a hit

Per job, without the cache the implant task loaded the pipeline and hashed the model's files (for the manifest);
with a hit it stats the files (the cache key) and takes the loaded model. Both paths then copy the UNet once
(without the cache: the frozen teacher; with it: the trainable copy), so that copy is no saving and is shown
for scale. Loads read files the page cache holds (a worker's second job on a model); a cold disk costs more.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from common.jobs.model_cache import BaseModelCache
from persguard_core import model_io
from persguard_core.implant.parts import DiffusionParts


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def report(name: str, times: list[float]) -> float:
    median = statistics.median(times)
    print(f"{name:<44} median {median:8.3f} s  ({', '.join(f'{t:.3f}' for t in times)})", flush=True)
    return median


def sd21_folder(root: Path) -> Path:
    from gpu_implant_sd21 import sd21_pipeline  # benchmarks/ is on sys.path when run as a script

    folder = root / "sd21-random"
    start = time.perf_counter()
    sd21_pipeline(tiny=False).save_pretrained(folder, safe_serialization=True)
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    print(f"wrote an SD-2.1-base-size model, {size / 2**30:.2f} GiB, in {time.perf_counter() - start:.0f} s")
    return folder


def job_pair(model: str, repeat: int) -> None:
    """protect() loading the model itself (the old path) vs from a cached one; a short job on the built-in model."""
    from persguard_core.images import save_images
    from persguard_core.protect import protect
    from persguard_core.spec import ProtectionSpec, SubjectSpec, Training
    from persguard_core.toyworld import split

    with tempfile.TemporaryDirectory() as tmp:
        images = [str(p) for p in save_images(split("eval")[0].views(4, seed=0, size=64), Path(tmp) / "imgs")]
        spec = ProtectionSpec(
            base_model=model,
            subjects=[SubjectSpec(name="a", class_noun="cross", images=images)],
            training=Training(steps=5, batch_size=2),
            carrier="unet",
        )
        cache = BaseModelCache()
        with cache.use(model, "cpu"):
            pass  # the first job's load

        def cached() -> None:
            with cache.use(model, "cpu") as base:
                protect(spec, Path(tempfile.mkdtemp(dir=tmp)), n_class_images=4, base=base)

        uncached = report(
            "job, loading the base model",
            timed(lambda: protect(spec, Path(tempfile.mkdtemp(dir=tmp)), n_class_images=4), repeat),
        )
        hit = report("job, base model from the cache", timed(cached, repeat))
        print(f"job saving: {uncached - hit:.3f} s of {uncached:.3f} s ({(uncached - hit) / uncached:.0%})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="builtin")
    parser.add_argument("--sd21", action="store_true", help="measure an SD-2.1-base-size random model")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--job", action="store_true", help="also time a short implantation both ways")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        model = str(sd21_folder(Path(tmp))) if args.sd21 else args.model
        path = model_io.resolve(model)
        model_io.load_pipeline(path)  # warm-up: imports, page cache
        load = report("load_pipeline (old path, per job)", timed(lambda: model_io.load_pipeline(path), args.repeat))
        digest = report("model_sha256 (old path, per job)", timed(lambda: model_io.model_sha256(path), args.repeat))

        def old_setup() -> None:  # what protect() did before training: load, hash, copy the teacher
            DiffusionParts.from_pipeline(model_io.load_model(path).pipe)

        before = report("setup before training, old path", timed(old_setup, args.repeat))
        gc.collect()
        cache = BaseModelCache()
        with cache.use(model, "cpu") as base:
            pass

        def hit() -> None:
            with cache.use(model, "cpu"):
                pass

        def new_setup() -> None:  # what it does now on a hit: take the cached model, copy the trainable UNet
            with cache.use(model, "cpu") as base:
                DiffusionParts.from_base(base.pipe)

        lookup = report("cache hit (new path, per job)", timed(hit, args.repeat))
        report("UNet copy (both paths, per job)", timed(lambda: model_io.trainable_copy(base.pipe), args.repeat))
        after = report("setup before training, new path (hit)", timed(new_setup, args.repeat))
        print(f"saving per job: load + sha256 - hit = {load + digest - lookup:.3f} s")
        print(f"setup before training: {before:.3f} s -> {after:.3f} s (saves {before - after:.3f} s)")
    if args.job:
        job_pair(model if not args.sd21 else "builtin", args.repeat)


if __name__ == "__main__":
    main()
