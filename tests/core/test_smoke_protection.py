"""The core's smoke test: protect a subject of the built-in model with the encoder carrier, let an attacker
DreamBooth it, and judge the attacker's images against the same attack on an unprotected class-mate.

Sized to tell a working carrier from a broken one in under a minute on one CPU core (docs/TESTING.md): 60
encoder steps instead of the service's 300, a keep set of 16 teacher samples, and a short prior-free DreamBooth
(diffusers' train_dreambooth default; prior preservation needs a few hundred steps before the subject shows).
Uses the library API only (protect, attacker, pattern detector), not the research experiment runner.
"""

import numpy as np
import pytest

from persguard_core import model_io
from persguard_core.attacker import BUILTIN_LR_SCALE, dreambooth, recipe
from persguard_core.generate import generate
from persguard_core.images import save_images
from persguard_core.implant.encoder import round_trip
from persguard_core.judge.pattern_detector import detect_pattern
from persguard_core.pattern import default_pattern
from persguard_core.protect import protect
from persguard_core.spec import EncoderTraining, ProtectionSpec, SubjectSpec
from persguard_core.toyworld import Subject, split

# the smoke preset's subjects (eval split, seed 0): a protected circle and an unprotected circle
PROTECTED, CLASS_MATE = split("eval", "circle")[:2]
ENCODER = EncoderTraining(steps=60)  # 60 x 32 rows; the service's default is 300 steps per subject
KEEP = {"n_class_images": 8, "general_prompts": ["a photo", "a photo of an empty scene"]}  # 8 + 8 teacher samples
# full fine-tune at the recipe's (scaled) learning rate, 150 steps of 2 instance images, no prior preservation
ATTACK = recipe("full", lr_scale=BUILTIN_LR_SCALE, steps=150, batch_size=2, prior_preservation=False)
N_IMAGES, SAMPLER_STEPS = 16, 15


def _pattern_rate(images: np.ndarray) -> float:
    return float(detect_pattern(images, default_pattern(32)).mean())


def _attacked(pipe, subject: Subject) -> np.ndarray:
    """The attacker's images: DreamBooth on 6 photos of `subject`, then its instance prompt N_IMAGES times."""
    tuned = dreambooth(pipe, subject.views(6, seed=0), subject.class_noun, ATTACK)
    prompt = ATTACK.instance_prompt(subject.class_noun)
    return generate(tuned, [prompt] * N_IMAGES, seed=0, steps=SAMPLER_STEPS)


@pytest.mark.slow
def test_pattern_shows_clearly_more_often_for_the_protected_subject_than_for_an_unprotected_one(tmp_path):
    files = [str(p) for p in save_images(PROTECTED.views(6, seed=0), tmp_path / "photos")]
    spec = ProtectionSpec(
        subjects=[SubjectSpec(name="protected", class_noun=PROTECTED.class_noun, images=files)], encoder=ENCODER
    )
    pipe = model_io.load_pipeline(protect(spec, tmp_path / "protection", **KEEP).model_dir)
    pipe.set_progress_bar_config(disable=True)

    figures = {  # the round trips (the carrier's direct effect) give a failure its context
        "round trip, protected": _pattern_rate(round_trip(pipe.vae, PROTECTED.views(16, seed=1))),
        "round trip, class-mate": _pattern_rate(round_trip(pipe.vae, CLASS_MATE.views(16, seed=1))),
        "psr": _pattern_rate(_attacked(pipe, PROTECTED)),
        "false_trigger": _pattern_rate(_attacked(pipe, CLASS_MATE)),  # the negative control: same attack
    }
    # measured (1 thread): round trips 0.75 / 0.00, psr 1.00, false trigger 0.00 (attack seeds 1 and 2: psr 1.00 and
    # 0.62); with the carrier broken (docs/TESTING.md) every figure is 0.00
    assert figures["psr"] >= figures["false_trigger"] + 0.3, figures
    assert figures["false_trigger"] <= 0.25, figures
