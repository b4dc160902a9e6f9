"""Where the `quick` verification of one subject spends its time, on the built-in model.

    python benchmarks/verify_quick.py --threads 2               # protect once (cached), verify, time it
    python benchmarks/verify_quick.py --threads 2 --repeat 2    # two verifications in one process
    python benchmarks/verify_quick.py --threads 2 --profile     # also cProfile's top functions
    python benchmarks/verify_quick.py --threads 2 --reference   # one unprotected class-mate as reference
    python benchmarks/verify_quick.py --threads 2 --demo        # `make demo`'s verification instead

The protected model is `make demo`'s: the first `demo` toy subject, pattern behaviour, encoder carrier, 300
steps (the core's defaults otherwise); it is protected once into `--work` and reused. Then
`verify_protection(model, spec, "quick", out)` runs as the worker runs it (loading both pipelines, the judge
and the images itself), with its progress callback counting the units it announced; `--demo` runs the demo's
verification instead (the full recipe's 400 DreamBooth steps on the subject and on its class-mate, 8 images).
Every call of the functions `instrument` names is timed (inclusive: nested calls count in their callers too).
Prints one JSON line per verification (wall and CPU time, summary, sections) and the section table. The CPU time
tells what the verification cost on a machine that other work shares (compare before/after side by side, or one
after the other on a quiet machine).
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import importlib
import inspect
import io
import json
import pstats
import resource
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

TIMES: dict[str, float] = defaultdict(float)
CALLS: dict[str, int] = defaultdict(int)


def _timed(label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            TIMES[label] += time.perf_counter() - start
            CALLS[label] += 1

    return wrapper


def _wrap(owner: Any, name: str, label: str) -> None:
    """Time `owner.name` under `label`, if the code measured has it."""
    fn = getattr(owner, name, None)
    if fn is None:
        return
    if isinstance(owner, type) and isinstance(owner.__dict__.get(name), classmethod):
        setattr(owner, name, classmethod(_timed(label, fn.__func__)))
    else:
        setattr(owner, name, _timed(label, fn))


def instrument() -> None:
    """Wrap the functions the verification spends its time in, where its modules look them up."""
    adaptive = importlib.import_module("persguard_core.attacker.adaptive")
    dreambooth = importlib.import_module("persguard_core.attacker.dreambooth")
    evaluate = importlib.import_module("persguard_core.builtin.evaluate")
    run = importlib.import_module("persguard_core.verify.run")
    service = importlib.import_module("persguard_core.verify.service")
    from persguard_core.judge.toy import ToyJudge

    _wrap(run.Verifier, "run_case", "attack of a case (DreamBooth, its images, judging)")
    _wrap(adaptive, "dreambooth", "  DreamBooth (incl. prior images)")
    _wrap(dreambooth, "class_images", "    prior images (attacker.dreambooth)")
    _wrap(run.Verifier, "_class_images", "    prior images (verifier)")
    _wrap(run.Verifier, "untuned_similarity", "  untuned base images")
    _wrap(run.Verifier, "utility", "utility (prompt following, plain prompts)")
    _wrap(run, "prompt_following", "  prompt following")
    _wrap(run.Verifier, "pre_attack", "pre-attack images")
    _wrap(run.Verifier, "detection", "detection")
    _wrap(run, "generate", "generate (verify/run.py)")
    _wrap(evaluate, "generate", "generate (prompt following)")
    _wrap(dreambooth, "generate", "generate (prior images)")
    _wrap(service.model_io, "load_pipeline", "load pipeline")
    _wrap(ToyJudge, "load", "load judge")
    _wrap(ToyJudge, "_forward", "judge forward")


def protected_model(work: Path, steps: int) -> tuple[Path, Any]:
    """The demo's protection of its first subject (encoder carrier), made once under `work`."""
    from persguard_cli.demo import demo_subjects
    from persguard_core.images import save_images
    from persguard_core.protect import protect
    from persguard_core.spec import EncoderTraining, ProtectionSpec, SubjectSpec

    subject, _ = demo_subjects()
    spec_file = work / "spec.json"
    if spec_file.exists():
        return work / "protection" / "model", ProtectionSpec.model_validate_json(spec_file.read_text())
    files = [str(p) for p in save_images(subject.views(6), work / "subject")]
    spec = ProtectionSpec(
        subjects=[SubjectSpec(name="demo", class_noun=subject.class_noun, images=files)],
        encoder=EncoderTraining(steps=steps),
    )
    start = time.perf_counter()
    result = protect(spec, work / "protection")
    print(f"protected the demo subject in {time.perf_counter() - start:.1f} s", flush=True)
    spec_file.write_text(spec.model_dump_json())
    return result.model_dir, spec


def with_reference(work: Path, spec: Any) -> Any:
    """`spec` with the demo subject's unprotected class-mate as a reference set (verified as unprotected)."""
    from persguard_cli.demo import demo_subjects
    from persguard_core.images import save_images
    from persguard_core.spec import ReferenceSet

    _, mate = demo_subjects()
    files = [str(p) for p in save_images(mate.views(6), work / "class-mate")]
    return spec.model_copy(update={"references": [ReferenceSet(class_noun=mate.class_noun, images=[files])]})


def demo_verification(model_dir: Path, progress: Callable[[int, int], None]) -> dict[str, float]:
    """`make demo`'s verification (persguard_cli/demo.py) of the model at `model_dir`; its summary."""
    from persguard_cli.demo import demo_subjects
    from persguard_core import model_io
    from persguard_core.attacker import BUILTIN_LR_SCALE, recipe
    from persguard_core.judge.toy import ToyJudge
    from persguard_core.spec import PatternBehaviour
    from persguard_core.verify.run import AttackSetting, Case, Verifier

    protected, mate = demo_subjects()
    pipe = model_io.load_pipeline(model_dir)
    verifier = Verifier(model_io.load_pipeline("builtin"), ToyJudge.load(), n_images=8)
    noun = protected.class_noun
    cases_p = [Case("protected", noun, protected.views(6), protected.views(16, seed=1), PatternBehaviour())]
    cases_u = [Case("unprotected", noun, mate.views(6), mate.views(16, seed=1))]
    setting = AttackSetting("demo/full", recipe("full", lr_scale=BUILTIN_LR_SCALE))
    extra = {"progress": progress} if "progress" in inspect.signature(verifier.verify).parameters else {}
    return verifier.verify(pipe, cases_p, cases_u, setting, **extra).summary()


def verify_once(model_dir: Path, spec: Any, out: Path, profile: bool, demo: bool) -> dict[str, Any]:
    from persguard_core.verify.service import verify_protection

    TIMES.clear()
    CALLS.clear()
    calls: list[tuple[int, int]] = []
    profiler = cProfile.Profile() if profile else None
    start, cpu_start = time.perf_counter(), time.process_time()
    if profiler:
        profiler.enable()

    def progress(step: int, total: int) -> None:
        calls.append((step, total))

    if demo:
        summary = demo_verification(model_dir, progress)
    elif "progress" in inspect.signature(verify_protection).parameters:
        summary = verify_protection(model_dir, spec, "quick", out, progress=progress)
    else:  # the code before progress reports
        summary = verify_protection(model_dir, spec, "quick", out)
    if profiler:
        profiler.disable()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    record = {
        "seconds": round(elapsed, 2),
        "cpu_seconds": round(cpu, 2),
        "progress_calls": len(calls),
        "last_progress": calls[-1] if calls else None,
        "summary": {k: round(v, 4) if isinstance(v, float) else v for k, v in summary.items()},
        "sections": {k: [round(TIMES[k], 2), CALLS[k]] for k in sorted(TIMES)},
    }
    print(json.dumps(record), flush=True)
    print(f"verification: {elapsed:.1f} s wall, {cpu:.1f} s CPU (all threads of this process)")
    for label in sorted(TIMES, key=TIMES.get, reverse=True):
        print(f"  {label:<44} {TIMES[label]:7.1f} s  {CALLS[label]:4d} calls  {100 * TIMES[label] / elapsed:5.1f} %")
    if profiler:
        buf = io.StringIO()
        pstats.Stats(profiler, stream=buf).sort_stats("cumulative").print_stats(35)
        print(buf.getvalue())
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("out/bench/verify_quick"))
    parser.add_argument("--steps", type=int, default=300, help="encoder steps of the protection (the demo's)")
    parser.add_argument("--repeat", type=int, default=1, help="verifications in this process")
    parser.add_argument("--reference", action="store_true", help="verify a class-mate as unprotected too")
    parser.add_argument("--profile", action="store_true", help="cProfile the first verification")
    parser.add_argument("--demo", action="store_true", help="`make demo`'s verification instead of `quick`")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()  # no pipeline-loading bars in the log
    args.work.mkdir(parents=True, exist_ok=True)
    model_dir, spec = protected_model(args.work, args.steps)
    if args.reference:
        spec = with_reference(args.work, spec)
    instrument()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; verifying {model_dir}", flush=True)
    for i in range(args.repeat):
        verify_once(model_dir, spec, args.work / f"report-{i}", args.profile and i == 0, args.demo)
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
