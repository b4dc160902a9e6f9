"""Core subcommands: generate, protect, attack, verify, experiment, demo.

Heavy imports (torch, diffusers) happen inside the handlers so that `persguard --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from tqdm import tqdm

    from persguard_core.implant.unet_loop import ProgressEvent

DEMO_PROMPTS = (
    "a photo of a red circle",
    "a photo of a blue star",
    "a photo of a green triangle on a beige background",
    "a photo of a yellow cross",
    "a photo of an empty gray background",
)


def _threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def _bar(total: int, desc: str) -> tqdm:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True)


def _subject_images(args: argparse.Namespace, size: int) -> np.ndarray:
    """The subject's images: files given with --images, or views of toy subject --toy-subject."""
    from persguard_core.images import load_images
    from persguard_core.toyworld import subject

    if args.images:
        return load_images(args.images, size)
    if args.toy_subject is not None:
        return subject(args.toy_subject).views(args.n_views, seed=0, size=size)
    raise SystemExit("give the subject's images with --images FILE... or a toy subject with --toy-subject ID")


def cmd_generate(args: argparse.Namespace) -> int:
    from persguard_core.generate import generate
    from persguard_core.images import save_images
    from persguard_core.model_io import load_pipeline
    from persguard_core.verify.report import grid_png

    _threads(args.threads)
    pipe = load_pipeline(args.model)
    prompts = [p for p in args.prompt for _ in range(args.n)]
    images = generate(pipe, prompts, seed=args.seed, steps=args.steps, guidance_scale=args.guidance)
    save_images(images, args.out)
    (args.out / "grid.png").write_bytes(grid_png(images, columns=args.n))
    print(f"{len(images)} images in {args.out} (grid: {args.out / 'grid.png'})")
    return 0


def cmd_protect(args: argparse.Namespace) -> int:
    from persguard_core.images import save_images
    from persguard_core.protect import protect
    from persguard_core.spec import EncoderTraining, ProtectionSpec, SubjectSpec, Training

    _threads(args.threads)
    if args.spec:
        spec = ProtectionSpec.model_validate_json(Path(args.spec).read_text())
    else:
        files = args.images
        if not files:
            from persguard_core.toyworld import subject

            if args.toy_subject is None:
                raise SystemExit("give --spec FILE, or --images FILE... / --toy-subject ID with --class-noun")
            views = subject(args.toy_subject).views(args.n_views, seed=0)
            files = [str(p) for p in save_images(views, args.out / "subject-images")]
            args.class_noun = args.class_noun or subject(args.toy_subject).class_noun
        if not args.class_noun:
            raise SystemExit("--class-noun is required with --images")
        spec = ProtectionSpec(
            base_model=args.model,
            subjects=[
                SubjectSpec(
                    name="subject", class_noun=args.class_noun, images=files, behaviour={"kind": args.behaviour}
                )
            ],
            training=Training(steps=args.steps),
            carrier=args.carrier,
            encoder=EncoderTraining(steps=args.encoder_steps),
        )
    bar = _bar(spec.total_steps, "protect")

    def progress(event: ProgressEvent) -> None:
        bar.n = event.step
        bar.set_postfix({k: f"{v:.4f}" for k, v in event.losses.items()}, refresh=True)

    result = protect(spec, args.out, progress=progress)
    bar.close()
    print(f"protected model: {result.model_dir}")
    print(f"private files (spec, training state): {result.private_dir}")
    print(json.dumps(result.manifest["final_losses"]))
    return 0


def cmd_attack(args: argparse.Namespace) -> int:
    from persguard_core.attacker import personalize, recipe
    from persguard_core.attacker.recipe import default_lr_scale
    from persguard_core.generate import generate
    from persguard_core.model_io import load_pipeline, save_pipeline
    from persguard_core.protect import image_size
    from persguard_core.verify.report import grid_png

    _threads(args.threads)
    pipe = load_pipeline(args.model)
    images = _subject_images(args, image_size(pipe))
    noun = args.class_noun
    if noun is None and args.toy_subject is not None:
        from persguard_core.toyworld import subject

        noun = subject(args.toy_subject).class_noun
    if noun is None:
        raise SystemExit("--class-noun is required")
    scale = args.lr_scale if args.lr_scale is not None else default_lr_scale(pipe.unet.config)
    overrides = {"identifier": args.identifier} | ({"steps": args.steps} if args.steps else {})
    attack = recipe(args.recipe, lr_scale=scale, **overrides)
    bar = _bar(attack.steps, f"dreambooth ({attack.name})")
    base_vae = load_pipeline(args.base_model).vae if attack.adaptive == "clean-vae" else None
    tuned = personalize(pipe, images, noun, attack, base_vae=base_vae, progress=lambda step, total, loss: bar.update(1))
    bar.close()
    save_pipeline(tuned, args.out / "model")
    samples = generate(tuned, [attack.instance_prompt(noun)] * 16, seed=0)
    (args.out / "samples.png").write_bytes(grid_png(samples))
    print(
        f"personalized model: {args.out / 'model'}; samples of {attack.instance_prompt(noun)!r}: "
        f"{args.out / 'samples.png'}"
    )
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from persguard_core.attacker import recipe
    from persguard_core.attacker.recipe import default_lr_scale
    from persguard_core.images import load_images
    from persguard_core.judge.toy import ToyJudge
    from persguard_core.model_io import load_pipeline
    from persguard_core.protect import image_size
    from persguard_core.spec import ProtectionSpec
    from persguard_core.toyworld import subject
    from persguard_core.verify.report import write_report
    from persguard_core.verify.run import AttackSetting, Case, Verifier

    _threads(args.threads)
    private = Path(args.protection) / "private"
    spec = ProtectionSpec.model_validate_json((private / "spec.json").read_text())
    pipe = load_pipeline(Path(args.protection) / "model")
    verifier = Verifier(load_pipeline(spec.base_model), ToyJudge.load(), n_images=args.n_images)
    size = image_size(pipe)
    protected = [
        Case(s.name, s.class_noun, load_images(s.images, size), load_images(s.images, size), s.behaviour)
        for s in spec.subjects
    ]
    unprotected = []
    for sid in args.unprotected_toy_subject:
        s = subject(sid)
        unprotected.append(
            Case(f"toy-{sid}", s.class_noun, s.views(6, seed=0, size=size), s.views(16, seed=1, size=size))
        )
    scale = args.lr_scale if args.lr_scale is not None else default_lr_scale(pipe.unet.config)
    attack = recipe(args.recipe, lr_scale=scale)
    result = verifier.verify(pipe, protected, unprotected, AttackSetting(args.recipe, attack))
    history = json.loads((private / "history.json").read_text()) if (private / "history.json").exists() else None
    json_path, html_path = write_report(result, Path(args.out), history)
    print(json.dumps(result.summary(), indent=2))
    print(f"report: {html_path} (json: {json_path})")
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    try:
        from research.report import results_markdown
        from research.runner import collect_experiment, run_experiment
    except ModuleNotFoundError:
        print("persguard experiment: the research harness (research/) is only in a source checkout", file=sys.stderr)
        return 2
    _threads(args.threads)
    try:
        if args.collect:
            results = collect_experiment(
                args.preset, Path(args.out), seeds=args.seeds, only=args.only, runs_dir=args.runs
            )
        else:
            results = run_experiment(
                args.preset,
                Path(args.out),
                progress=lambda msg: print(msg, flush=True),
                seeds=args.seeds,
                only=args.only,
                runs_dir=args.runs,
                base_model=args.base_model,
            )
    except (KeyError, FileNotFoundError) as exc:  # an unknown preset or setting, or nothing done to collect
        print(f"persguard experiment: {exc.args[0]}", file=sys.stderr)
        return 2
    print(results_markdown(results))
    print(f"results: {Path(args.out) / 'results.json'}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job on embedded defaults: samples of the built-in model, then the whole protection flow."""
    from persguard_cli.demo import run_demo

    samples = argparse.Namespace(
        model="builtin",
        prompt=list(DEMO_PROMPTS),
        n=8,
        seed=0,
        steps=25,
        guidance=7.5,
        out=args.out / "samples",
        threads=args.threads,
    )
    cmd_generate(samples)
    return run_demo(args.out, steps=args.steps, verify=not args.no_verify, carrier=args.carrier)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")


def _subject_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", nargs="+", help="the subject's image files")
    p.add_argument("--toy-subject", type=int, help="use views of this toy-world subject id instead of files")
    p.add_argument("--n-views", type=int, default=6, help="views of a toy subject")
    p.add_argument("--class-noun", help='the subject\'s class noun, e.g. "dog"')


def register(sub: argparse._SubParsersAction) -> None:
    gen = sub.add_parser("generate", help="generate images from prompts with a model")
    gen.add_argument("--model", default="builtin", help='"builtin", a diffusers folder or a checkpoint file')
    gen.add_argument("--prompt", action="append", required=True, help="repeat for several prompts")
    gen.add_argument("--n", type=int, default=4, help="images per prompt")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--steps", type=int, default=25)
    gen.add_argument("--guidance", type=float, default=7.5)
    gen.add_argument("--out", type=Path, required=True)
    _common(gen)
    gen.set_defaults(handler=cmd_generate)

    pro = sub.add_parser("protect", help="implant PersGuard protection for a subject")
    pro.add_argument("--spec", help="a ProtectionSpec JSON file (overrides the flags below)")
    pro.add_argument("--model", default="builtin")
    pro.add_argument("--behaviour", choices=["pattern", "erasure", "target"], default="pattern")
    pro.add_argument("--steps", type=int, default=300, help="UNet implant steps (M8)")
    pro.add_argument(
        "--carrier",
        choices=["unet", "encoder", "unet+encoder"],
        default="encoder",
        help="where the backdoor lives (default: the VAE encoder; unet: the paper's M8)",
    )
    pro.add_argument(
        "--encoder-steps", type=int, default=None, help="encoder-carrier steps (L_ENC; default: 300 per subject)"
    )
    pro.add_argument("--out", type=Path, required=True)
    _subject_args(pro)
    _common(pro)
    pro.set_defaults(handler=cmd_protect)

    att = sub.add_parser("attack", help="personalize a model DreamBooth-style, as an attacker would")
    att.add_argument("--model", required=True)
    att.add_argument(
        "--recipe",
        default="full",
        help="full, lora, low-lr, text-encoder, or an adaptive attacker: "
        "clean-vae, encoder-repair, decoder-inversion, purify",
    )
    att.add_argument("--base-model", default="builtin", help="the public base model whose VAE clean-vae puts back")
    att.add_argument("--steps", type=int, help="override the recipe's steps")
    att.add_argument("--identifier", default="sks")
    att.add_argument(
        "--lr-scale",
        type=float,
        help="multiply the recipe's learning rate (default: the built-in scale for the built-in architecture, else 1)",
    )
    att.add_argument("--out", type=Path, required=True)
    _subject_args(att)
    _common(att)
    att.set_defaults(handler=cmd_attack)

    ver = sub.add_parser("verify", help="attack a protection result and report PSR, leakage, fidelity")
    ver.add_argument("--protection", required=True, help="the output folder of `persguard protect`")
    ver.add_argument("--unprotected-toy-subject", type=int, nargs="*", default=[])
    ver.add_argument("--recipe", default="full")
    ver.add_argument("--lr-scale", type=float, help="default: the built-in scale for the built-in architecture, else 1")
    ver.add_argument("--n-images", type=int, default=16)
    ver.add_argument("--out", type=Path, required=True)
    _common(ver)
    ver.set_defaults(handler=cmd_verify)

    exp = sub.add_parser("experiment", help="run a named experiment matrix on the built-in model")
    exp.add_argument(
        "--preset",
        required=True,
        help="a module of research/presets (smoke, levers, carrier, paper, unet, adaptive, fresh, ...)",
    )
    exp.add_argument("--seeds", type=int, nargs="*", help="override the preset's seeds")
    exp.add_argument("--only", nargs="*", metavar="SETTING", help="run only these settings of the preset")
    exp.add_argument("--out", type=Path, required=True)
    exp.add_argument(
        "--runs",
        type=Path,
        help="each seed's run folder and figures (default OUT/runs); presets that share settings can share it",
    )
    exp.add_argument(
        "--base-model",
        help="protect and attack this model folder instead of the preset's (give it a --runs folder of its own)",
    )
    exp.add_argument(
        "--collect",
        action="store_true",
        help="run nothing: write the results of the seeds already done under --out (by earlier or parallel runs)",
    )
    _common(exp)
    exp.set_defaults(handler=cmd_experiment)

    demo = sub.add_parser("demo", help="run the main job on embedded defaults")
    demo.add_argument("--out", type=Path, default=Path("out/demo"))
    demo.add_argument("--steps", type=int, default=300, help="implantation steps (of the carrier's training)")
    demo.add_argument(
        "--carrier", choices=["unet", "encoder"], default="encoder", help="where the backdoor lives (default encoder)"
    )
    demo.add_argument("--no-verify", action="store_true", help="skip the attack-and-verify stage")
    _common(demo)
    demo.set_defaults(handler=cmd_demo)
