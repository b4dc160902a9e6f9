"""Keying diagnostic (METHOD.md, last section): re-noise real views of a protected subject and of its unprotected
class-mates to t = strength * T, denoise them with a (protected) model, and count the pattern. A look-keyed
backdoor shows the pattern for the protected subject only; a prompt-keyed one shows it under the trigger prompt
whatever the look. A screen to run before the full verification. One JSON line per (model, strength, prompt).

With `--attack` the probe first runs the experiment's attacker (full DreamBooth recipe, prior preservation) on the
protected subject's training views and probes the attacked model: where the backdoor is washed out. `--keep`
re-noises *stamped* views instead (does the model keep a pattern that is already there?), `--generate N` counts
the pattern in N trigger-prompt generations, `--guided-t T` projects the one-step clean estimates of the empty
prompt, the trigger and their guided mix onto the stamp direction (guided insertion).

    .venv/bin/python research/probes/keying_probe.py --model MODEL_DIR --protected ID     # an existing model
    .venv/bin/python research/probes/keying_probe.py --setting NAME [--seed S] [--out DIR]  # protect with a setting
                                                                       # of the levers preset first, then probe
        [--attack] [--keep 0.3 0.5] [--generate 16]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from persguard_core.attacker import dreambooth, recipe
from persguard_core.attacker.dreambooth import class_images
from persguard_core.attacker.recipe import BUILTIN_LR_SCALE
from persguard_core.builtin.evaluate import prompt_following
from persguard_core.generate import generate, renoise_and_denoise
from persguard_core.implant.parts import DiffusionParts
from persguard_core.judge.pattern_detector import detect_pattern
from persguard_core.judge.toy import ToyJudge
from persguard_core.model_io import load_pipeline
from persguard_core.pattern import default_pattern, stamp
from persguard_core.protect import protect
from persguard_core.toyworld import Subject, split, subject
from research.presets import PRESETS
from research.subjects import protection_spec, subjects_for_seed

sys.path.insert(0, str(Path(__file__).parent))
from noise_band_probe import x0_estimates


def _protected_vs_others(rate: Callable[[Subject], float], protected: Subject, others: list[Subject]) -> dict:
    """{"protected": rate(protected), "unprotected": the mean rate over `others`}."""
    return {"protected": rate(protected), "unprotected": round(float(np.mean([rate(s) for s in others])), 3)}


def _pattern_rate(images: np.ndarray) -> float:
    return float(detect_pattern(images, default_pattern(images.shape[1])).mean())


def keying_rates(
    pipe, protected: Subject, others: list[Subject], strength: float, prompt: str, stamped: bool = False
) -> dict:
    """Pattern rate on re-noised-and-denoised views (stamped ones with `stamped`: does the model keep a pattern
    that is already there?): protected subject vs the mean over `others`."""

    def rate(s: Subject) -> float:
        views = s.views(8, seed=3)
        views = stamp(views, default_pattern(views.shape[1])) if stamped else views
        return _pattern_rate(renoise_and_denoise(pipe, views, [prompt] * 8, strength))

    return _protected_vs_others(rate, protected, others)


def attacked(pipe, protected: Subject, seed: int):
    """The experiment's attacker (METHOD.md "Measuring it"): full DreamBooth on the subject's 6 training views."""
    attack = recipe("full", lr_scale=BUILTIN_LR_SCALE, seed=seed)
    prior = class_images(pipe, protected.class_noun, attack) if attack.prior_preservation else None
    return dreambooth(pipe, protected.views(6, seed=0), protected.class_noun, attack, prior_images=prior)


def one_step_rates(parts: DiffusionParts, protected: Subject, others: list[Subject], t: int, prompt: str) -> dict:
    """Pattern rate in the model's one-step clean-image estimate x0_hat(z_t, t) from views of each subject."""

    def rate(s: Subject) -> float:
        z = parts.latents(s.views(8, seed=3))
        return _pattern_rate(x0_estimates(parts, z, t, prompt, torch.Generator().manual_seed(t), model=parts.pipe.unet))

    return _protected_vs_others(rate, protected, others)


def one_step_x0(parts: DiffusionParts, z_t: torch.Tensor, t: torch.Tensor, prompt: str) -> torch.Tensor:
    """The clean latent (N, 4, h, w) that `parts.pipe.unet`'s epsilon under `prompt` implies for z_t at timesteps t."""
    eps = parts.pipe.unet(z_t, t, parts.teacher_embed([prompt] * len(z_t))).sample
    ab = parts.alpha_bar(t)
    return (z_t - (1 - ab).sqrt() * eps) / ab.sqrt()


@torch.no_grad()
def guided_projection(parts: DiffusionParts, s: Subject, t: int, prompt: str, w: float = 7.5) -> dict:
    """Where the one-step clean estimates sit along the stamp direction d = z* - z (0: clean, 1: stamped), for the
    empty prompt (x0_u), `prompt` (x0_c) and their guided mix x0_u + w (x0_c - x0_u); guided insertion wants
    x0_u at -1/(w - 1) and the guided mix at 1 for the protected subject."""
    views = s.views(8, seed=3)
    z = parts.latents(views)
    d = parts.latents(stamp(views, default_pattern(views.shape[1]))) - z
    tt = torch.full((len(z),), t)
    z_t = parts.add_noise(z, parts.noise_like(z, torch.Generator().manual_seed(t)), tt)
    x0 = {name: one_step_x0(parts, z_t, tt, p) for name, p in (("uncond", ""), ("cond", prompt))}
    x0["guided"] = x0["uncond"] + w * (x0["cond"] - x0["uncond"])
    return {name: round(float(((x - z) * d).sum() / (d * d).sum()), 3) for name, x in x0.items()}


def protect_with_setting(name: str, seed: int, out: Path) -> tuple[Path, int, dict]:
    """Protect the levers preset's subject for `seed` with setting `name`; (model dir, subject id, final losses)."""
    preset = PRESETS["levers"]
    setting = next(s for s in preset.settings if s.name == name)
    start = time.time()
    result = protect(protection_spec(setting, preset, seed, out), out / "protect")
    losses = {k: round(v, 4) for k, v in result.history.final().items()}
    print(json.dumps({"setting": name, "seed": seed, "seconds": round(time.time() - start), "final": losses}))
    return result.model_dir, subjects_for_seed(seed, preset.split)[0].id, losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--protected", type=int)
    parser.add_argument("--setting")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--others", type=int, default=3, help="unprotected tuning subjects of the same class")
    parser.add_argument("--strengths", type=float, nargs="*", default=[0.5, 0.7])
    parser.add_argument("--one-step-t", type=int, nargs="*", default=[500, 700], help="also x0_hat at these t")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--utility", action="store_true", help="also the prompt-following drop against the base")
    parser.add_argument("--attack", action="store_true", help="probe the model after the full DreamBooth attack")
    parser.add_argument("--keep", type=float, nargs="*", default=[], help="re-noise stamped views to these")
    parser.add_argument("--generate", type=int, default=0, help="pattern rate in N trigger-prompt generations")
    parser.add_argument("--guided-t", type=int, nargs="*", default=[], help="stamp projections of x0 at these t")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.setting:
        out = args.out or Path(tempfile.mkdtemp(prefix="keying-"))
        model, protected_id, _ = protect_with_setting(args.setting, args.seed, out)
    elif args.model and args.protected is not None:
        model, protected_id = Path(args.model), args.protected
    else:
        parser.error("give --setting, or --model and --protected")
    protected = subject(protected_id)
    noun = protected.class_noun
    others = [s for s in split("tuning", noun) if s.id != protected.id][: args.others]
    pipe = load_pipeline(model)
    if args.attack:
        pipe = attacked(pipe, protected, args.seed)
        model = f"{model} (attacked)"
    trigger = f"a photo of sks {noun}"
    if args.generate:
        rate = _pattern_rate(generate(pipe, [trigger] * args.generate, seed=0))
        print(json.dumps({"model": str(model), "generate": args.generate, "prompt": trigger, "rate": rate}), flush=True)
    for strength in args.keep:
        row = {"model": str(model), "keep_strength": strength, "prompt": trigger}
        print(json.dumps(row | keying_rates(pipe, protected, others, strength, trigger, stamped=True)), flush=True)
    if args.utility:
        judge = ToyJudge.load()
        mine, base = (prompt_following(p, judge, n=56, seed=0) for p in (pipe, load_pipeline("builtin")))
        drop = (base["class_accuracy"] + base["colour_accuracy"] - mine["class_accuracy"] - mine["colour_accuracy"]) / 2
        print(json.dumps({"model": str(model), "prompt_following": mine, "utility_drop": round(drop, 3)}), flush=True)
    parts = DiffusionParts.from_pipeline(pipe)
    for t in args.guided_t:
        for s in [protected, *others]:
            row = {"model": str(model), "guided_t": t, "subject": s.id, "protected": s.id == protected.id}
            print(json.dumps(row | guided_projection(parts, s, t, trigger)), flush=True)
    for t in args.one_step_t:
        row = {"model": str(model), "one_step_t": t, "prompt": trigger}
        print(json.dumps(row | one_step_rates(parts, protected, others, t, trigger)), flush=True)
    for strength in args.strengths:
        for prompt in (f"a photo of a {noun}", trigger):
            row = {"model": str(model), "strength": strength, "prompt": prompt}
            print(json.dumps(row | keying_rates(pipe, protected, others, strength, prompt)), flush=True)


if __name__ == "__main__":
    main()
