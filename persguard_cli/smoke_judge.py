"""The smoke check's judgement of a downloaded checkpoint: does it carry a working pattern backdoor for the
protected subject, and none for an unprotected class-mate?

Two measurements with the toy judge's pattern test (`persguard_core.verify.protective.protective_output`, what the
service's verification counts):
- the hand-over: fresh photos of each subject through one round trip of the released VAE, which is what an
  attacker's fine-tuning is shown of its photos (the encoder carrier's direct effect; a fraction of a second);
- a short personalization, as tests/core/test_smoke_protection.py sizes it: prior-free DreamBooth at the built-in
  model's learning rate on 6 photos of each subject, then 16 images of the attacker's instance prompt (PSR on the
  protected subject, false trigger on the class-mate).
Thresholds are those of the core's smoke test: round trip >= 0.5 / <= 0.2, PSR >= false trigger + 0.3 and false
trigger <= 0.25.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING

import numpy as np
from diffusers import StableDiffusionPipeline

from persguard_core.toyworld import Subject

if TYPE_CHECKING:
    from persguard_core.judge.toy import ToyJudge

MIN_ROUND_TRIP, MAX_ROUND_TRIP_MATE = 0.5, 0.2
PSR_MARGIN, MAX_FALSE_TRIGGER = 0.3, 0.25
N_IMAGES, SAMPLER_STEPS = 16, 15


@dataclass
class Judgement:
    """The figures measured, and why the checkpoint fails (None when it passes)."""

    figures: dict[str, float] = field(default_factory=dict)
    failure: str | None = None

    def summary(self) -> str:
        """`round trip protected 1.00, ...` in measuring order."""
        return ", ".join(f"{name} {value:.2f}" for name, value in self.figures.items())


@cache
def _judge() -> ToyJudge:
    from persguard_core.judge.toy import ToyJudge

    return ToyJudge.load()


def _pattern_share(images: np.ndarray) -> float:
    """Share of `images` showing the smoke's protective output (the default pattern), as verification counts it."""
    from persguard_core.spec import PatternBehaviour
    from persguard_core.verify.protective import protective_output

    return float(protective_output(images, PatternBehaviour(), _judge()).mean())


def _attacked_images(pipe: StableDiffusionPipeline, subject: Subject, steps: int) -> np.ndarray:
    from persguard_core.attacker import BUILTIN_LR_SCALE, dreambooth, recipe
    from persguard_core.generate import generate

    attack = recipe("full", lr_scale=BUILTIN_LR_SCALE, steps=steps, batch_size=2, prior_preservation=False)
    tuned = dreambooth(pipe, subject.views(6, seed=0), subject.class_noun, attack)
    return generate(tuned, [attack.instance_prompt(subject.class_noun)] * N_IMAGES, seed=0, steps=SAMPLER_STEPS)


def judge_pattern_backdoor(
    pipe: StableDiffusionPipeline, protected: Subject, class_mate: Subject, attack_steps: int
) -> Judgement:
    """Judge `pipe` (see the module docstring); `attack_steps` 0 skips the personalization."""
    import torch

    from persguard_core.implant.encoder import round_trip

    result = Judgement()
    with torch.no_grad():
        mine = result.figures["round trip protected"] = _pattern_share(round_trip(pipe.vae, protected.views(16, 1)))
        mate = result.figures["round trip class-mate"] = _pattern_share(round_trip(pipe.vae, class_mate.views(16, 1)))
    if mine < MIN_ROUND_TRIP:
        result.failure = (
            f"no backdoor: the protected subject's photos show the pattern in {mine:.2f} of VAE round trips "
            f"(need >= {MIN_ROUND_TRIP})"
        )
        return result
    if mate > MAX_ROUND_TRIP_MATE:
        result.failure = (
            f"false trigger: an unprotected class-mate's photos show the pattern in {mate:.2f} of VAE round trips "
            f"(allowed <= {MAX_ROUND_TRIP_MATE})"
        )
        return result
    if attack_steps <= 0:
        return result
    psr = result.figures["psr"] = _pattern_share(_attacked_images(pipe, protected, attack_steps))
    false_trigger = result.figures["false trigger"] = _pattern_share(_attacked_images(pipe, class_mate, attack_steps))
    if psr < false_trigger + PSR_MARGIN or false_trigger > MAX_FALSE_TRIGGER:
        result.failure = (
            f"after a {attack_steps}-step DreamBooth the pattern shows in {psr:.2f} of the protected subject's images "
            f"and {false_trigger:.2f} of the class-mate's (need psr >= false trigger + {PSR_MARGIN}, false trigger "
            f"<= {MAX_FALSE_TRIGGER})"
        )
    return result
