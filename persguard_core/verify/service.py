"""Verification of one protection result, as the service runs it after implantation (`verify` task).

    summary = verify_protection(model_dir, spec, preset="quick", out_dir=report_dir, progress=fn)

Presets: "quick" (full DreamBooth recipe shortened to 100 steps, 8 images per case), "full" (the recipe's
own steps, 16 images) and "adaptive" (quick, then each adaptive attacker of attacker/adaptive.py at the same size:
`adaptive/<attacker>/psr` and `adaptive/<attacker>/false_trigger` in the summary). Unprotected cases are the spec's
reference sets, personalized with the same recipe.
Needs a judge for the model's images: the toy judge serves the built-in model and models derived from it.
`progress(step, total)`, if given, counts the units of work of every attacker of the preset (verify/run.py):
(0, total) once the models are loaded, then growing steps, (total, total) last.
"""

from __future__ import annotations

import logging
from pathlib import Path

from persguard_core import model_io
from persguard_core.attacker import BUILTIN_LR_SCALE, recipe
from persguard_core.images import load_images
from persguard_core.judge.base import NoJudge
from persguard_core.judge.toy import ToyJudge
from persguard_core.protect import image_size
from persguard_core.spec import ProtectionSpec
from persguard_core.verify.report import write_report
from persguard_core.verify.run import AttackSetting, Case, Verifier, VerifyProgress

log = logging.getLogger(__name__)
ADAPTIVE_ATTACKERS = ("clean-vae", "encoder-repair", "decoder-inversion", "purify")
PRESETS = {
    "quick": {"steps": 100, "n_images": 8, "adaptive": ()},
    "full": {"steps": None, "n_images": 16, "adaptive": ()},
    "adaptive": {"steps": 100, "n_images": 8, "adaptive": ADAPTIVE_ATTACKERS},
}


def verify_protection(
    model_dir: Path, spec: ProtectionSpec, preset: str, out_dir: Path, progress: VerifyProgress | None = None
) -> dict[str, float]:
    """Attack the protected model at `model_dir`, judge, write report.json/report.html; returns the summary."""
    if preset not in PRESETS:
        raise ValueError(f"unknown verification preset {preset!r}; known: {tuple(PRESETS)}")
    settings = PRESETS[preset]
    pipe = model_io.load_pipeline(model_dir)
    size = image_size(pipe)
    judge = ToyJudge.load()
    if size != judge.image_size:
        raise NoJudge(
            f"verification needs a judge for {size}px images; the shipped toy judge scores {judge.image_size}px "
            "images (the built-in model and models derived from it)"
        )
    base = model_io.load_pipeline(spec.base_model)
    verifier = Verifier(base, judge, n_images=settings["n_images"])
    protected = [
        Case(s.name, s.class_noun, load_images(s.images, size), load_images(s.images, size), s.behaviour)
        for s in spec.subjects
    ]
    unprotected = [
        Case(f"reference-{r.class_noun}-{i}", r.class_noun, load_images(imgs, size), load_images(imgs, size))
        for r in spec.references
        for i, imgs in enumerate(r.images)
    ]
    overrides = {"steps": settings["steps"]} if settings["steps"] else {}
    overrides |= {"identifier": spec.knowledge.identifiers[0], "template": spec.knowledge.templates[0]}
    setting = AttackSetting(f"verify/{preset}", recipe("full", lr_scale=BUILTIN_LR_SCALE, **overrides))
    adaptive = [
        AttackSetting(f"verify/{preset}/{name}", recipe(name, lr_scale=BUILTIN_LR_SCALE, **overrides))
        for name in settings["adaptive"]
    ]
    total = verifier.planned_units(pipe, protected, unprotected, setting) + sum(
        verifier.planned_units(pipe, protected, unprotected, s, figures=False) for s in adaptive
    )
    with verifier.reporting(total, progress):
        result = verifier.verify(pipe, protected, unprotected, setting)
        summary = result.summary()
        for name, attacker in zip(settings["adaptive"], adaptive, strict=True):
            figures = verifier.attack_figures(pipe, protected, unprotected, attacker)
            summary |= {f"adaptive/{name}/{key}": value for key, value in figures.items()}
    write_report(result, out_dir)
    log.info("verification %s of %s: %s", preset, model_dir, summary)
    return summary
