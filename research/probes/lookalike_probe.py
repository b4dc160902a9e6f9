"""Which of a protected subject's attributes the encoder carrier keys on (docs/RESEARCH.md, run 74).

On the fresh split every false trigger above 0.07 came from a class-mate that looks like its protected subject
(same or near colour, other texture). This probe changes one attribute of the protected subject at a time (main
colour, secondary colour, texture, marking, shape), keeping its id, so each look-alike is rendered in the very
same 16 placements and backgrounds, and counts the pattern on one round trip of those views through the released
VAE: the hand-over an attacker's fine-tune would learn from (no attack is run). The protected subject itself and
its real class-mate are printed beside them; the base VAE's round trip is the control.

    .venv/bin/python research/probes/lookalike_probe.py --seeds 0 1 2 3
    .venv/bin/python research/probes/lookalike_probe.py --seeds 0 1 2 3 --encoder '{"lookalike_rows": 64}'
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from persguard_core.implant.encoder import round_trip
from persguard_core.judge.toy import ToyJudge
from persguard_core.model_io import load_pipeline
from persguard_core.protect import protect
from persguard_core.toyworld.palette import COLOUR_NAMES, OBJECT_TEXTURES
from persguard_core.toyworld.render import Appearance
from persguard_core.toyworld.shapes import CLASS_NAMES
from persguard_core.toyworld.subjects import Subject
from persguard_core.verify.protective import protective_output
from research.presets import PRESETS
from research.subjects import GENERAL_PROMPTS, protection_spec, subjects_for_seed

TEXTURES = tuple(t for t in OBJECT_TEXTURES if t != "solid")  # a subject's textures: each needs its second colour


def lookalikes(app: Appearance) -> dict[str, list[Appearance]]:
    """Every appearance that differs from `app` in exactly one attribute, by attribute."""
    taken = {app.colour, app.secondary, app.marking[0] if app.marking else None}
    out: dict[str, list[Appearance]] = {
        "colour": [replace(app, colour=c) for c in COLOUR_NAMES if c not in taken],
        "secondary": [replace(app, secondary=c) for c in COLOUR_NAMES if c not in taken],
        "texture": [replace(app, texture=t) for t in TEXTURES if t != app.texture],
        "shape": [replace(app, shape=s) for s in CLASS_NAMES if s != app.shape],
    }
    out["marking"] = (
        [replace(app, marking=None)]
        if app.marking
        else [replace(app, marking=(c, 0.35, -0.35)) for c in COLOUR_NAMES if c not in taken][:3]
    )
    return out


def pattern_rate(vae, subject: Subject, judge: ToyJudge, behaviour) -> float:
    """Share of 16 fresh views of `subject` that show the pattern after one round trip through `vae`."""
    return float(protective_output(round_trip(vae, subject.views(16, seed=1)), behaviour, judge).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="adaptive", help="a tuning-split preset")
    ap.add_argument("--setting", default="encoder/full")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--encoder", default="{}", help="EncoderTraining overrides, JSON, e.g. '{\"lookalike_rows\": 64}'")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    preset = PRESETS[args.preset]
    if preset.split != "tuning":
        raise SystemExit(f"preset {args.preset!r} is on the {preset.split!r} split; this probe tunes: use tuning")
    setting = next(s for s in preset.settings if s.name == args.setting)
    setting = replace(setting, encoder=setting.encoder.model_copy(update=json.loads(args.encoder)))
    base, judge = load_pipeline("builtin"), ToyJudge.load()
    by_attribute: dict[str, list[float]] = {}
    for seed in args.seeds:
        subject, mate, _ = subjects_for_seed(seed, preset.split)
        with tempfile.TemporaryDirectory() as tmp:
            spec = protection_spec(setting, preset, seed, Path(tmp))
            behaviour = spec.subjects[0].behaviour
            vae = load_pipeline(
                str(protect(spec, Path(tmp) / "protect", general_prompts=GENERAL_PROMPTS).model_dir)
            ).vae
            with torch.no_grad():
                row = {"seed": seed, "subject": subject.id, "appearance": str(subject.appearance)}
                row["protected"] = pattern_rate(vae, subject, judge, behaviour)
                row["class_mate"] = pattern_rate(vae, mate, judge, behaviour)
                row["class_mate_appearance"] = str(mate.appearance)
                for attribute, apps in lookalikes(subject.appearance).items():
                    rates = [pattern_rate(vae, replace(subject, appearance=a), judge, behaviour) for a in apps]
                    controls = [pattern_rate(base.vae, replace(subject, appearance=a), judge, behaviour) for a in apps]
                    by_attribute.setdefault(attribute, []).extend(rates)
                    row[attribute] = {
                        "mean": round(float(np.mean(rates)), 3),
                        "each": {
                            _changed(subject.appearance, a): round(r, 3) for a, r in zip(apps, rates, strict=True)
                        },
                        "base_vae_mean": round(float(np.mean(controls)), 3),
                    }
        print(json.dumps(row), flush=True)
    summary = {k: round(float(np.mean(v)), 3) for k, v in by_attribute.items()}
    print(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "mean_by_attribute": summary}))


def _changed(old: Appearance, new: Appearance) -> str:
    """The one field in which `new` differs from `old`, as "field=value"."""
    for field in ("shape", "colour", "secondary", "texture", "marking"):
        if getattr(old, field) != getattr(new, field):
            return f"{field}={getattr(new, field)}"
    return "same"


if __name__ == "__main__":
    main()
