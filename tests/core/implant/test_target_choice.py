"""Choosing x* for erasure and target by the teacher's implicit classifier (implant/target_choice.py)."""

import numpy as np
import pytest
import torch

from persguard_core.diffusion import encode_latents
from persguard_core.implant.target_choice import best_teacher_sample, denoising_errors, preference
from persguard_core.toyworld import split
from tests.tiny_sd import tiny_sd_pipeline

torch.set_num_threads(1)


@pytest.mark.parametrize("version", ["sd1", "sd2"])
def test_denoising_errors_are_per_image_and_share_their_noise_across_prompts(version):
    pipe = tiny_sd_pipeline(version)
    images = np.random.default_rng(0).integers(0, 256, size=(3, 64, 64, 3), dtype=np.uint8)
    z = encode_latents(pipe.vae, images)
    a = denoising_errors(pipe, z, "a photo of a dog", draws=4)
    b = denoising_errors(pipe, z, "a photo of a dog", draws=4)
    assert a.shape == (3,) and torch.isfinite(a).all() and torch.equal(a, b)
    assert not torch.equal(a, denoising_errors(pipe, z, "a photo of a cat", draws=4))


def test_the_teacher_prefers_the_prompt_that_names_what_an_image_shows():
    from persguard_core.model_io import load_pipeline

    pipe = load_pipeline("builtin")
    diamonds = np.concatenate([s.views(2, seed=0) for s in split("tuning", "diamond")[:3]])
    circles = np.concatenate([s.views(2, seed=0) for s in split("tuning", "circle")[:3]])
    s_diamonds = preference(pipe, diamonds, "a photo of a diamond", "a photo of a circle")
    s_circles = preference(pipe, circles, "a photo of a diamond", "a photo of a circle")
    assert (s_diamonds > 0).all() and (s_circles < 0).all(), (s_diamonds, s_circles)


def test_the_chosen_teacher_sample_is_judged_what_its_prompt_names():
    from persguard_core.judge.toy import ToyJudge
    from persguard_core.model_io import load_pipeline

    pipe, judge = load_pipeline("builtin"), ToyJudge.load()
    diamond = best_teacher_sample(pipe, "a photo of a diamond", "a photo of a circle", n=8)
    empty = best_teacher_sample(pipe, "a photo of an empty white background", "a photo of a circle", n=8)
    assert diamond.shape == (32, 32, 3) and diamond.dtype == np.uint8
    assert judge.judge(np.stack([diamond, empty])).classes == ["diamond", "empty"]


def test_an_erasure_sample_ranked_against_the_unconditional_prompt_shows_no_object_where_the_class_prompt_fails():
    """The built-in model's "empty gray background" samples are mostly murky shapes; ranked against "a cross", a
    square-like one wins (no cross in it); against the empty prompt, an empty one (docs/RESEARCH.md)."""
    from persguard_core.judge.toy import ToyJudge
    from persguard_core.model_io import load_pipeline

    pipe, judge = load_pipeline("builtin"), ToyJudge.load()
    gray = "a photo of an empty gray background"
    by_class = best_teacher_sample(pipe, gray, "a photo of a cross")
    by_unconditional = best_teacher_sample(pipe, gray, "")
    classes = judge.judge(np.stack([by_class, by_unconditional])).classes
    assert classes[0] != "empty" and classes[1] == "empty", classes


@pytest.mark.parametrize("away", ["class", "unconditional"])
def test_the_specs_erasure_away_reaches_the_teacher_sample_choice(monkeypatch, away):
    from persguard_core import protect as protect_module
    from persguard_core.spec import ErasureBehaviour

    asked = []

    def choose(pipe, toward, away_prompt):
        asked.append((toward, away_prompt))
        return np.zeros((64, 64, 3), np.uint8)

    monkeypatch.setattr(protect_module, "best_teacher_sample", choose)
    behaviour = ErasureBehaviour(background_prompt="a photo of an empty gray background")
    to_target = protect_module.encoder_target(tiny_sd_pipeline("sd1"), behaviour, "cross", away)
    assert to_target(np.ones((2, 64, 64, 3), np.uint8), None).shape == (2, 64, 64, 3)
    assert asked == [(behaviour.background_prompt, "a photo of a cross" if away == "class" else "")]
