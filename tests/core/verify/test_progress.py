"""A verification's progress: (step, total) in units planned before the first one, and the base model's
generations shared with a release that generates as the base does."""

from __future__ import annotations

import copy
from collections import Counter

import numpy as np
import pytest
import torch

from persguard_core import model_io
from persguard_core.attacker import personalize, recipe
from persguard_core.attacker.dreambooth import CLASS_IMAGE_STEPS
from persguard_core.generate import generate
from persguard_core.judge.toy import ToyJudge
from persguard_core.spec import PatternBehaviour
from persguard_core.toyworld import split
from persguard_core.verify import run
from persguard_core.verify.run import AttackSetting, Case, Verifier, generates_alike

# a short attack: 3 DreamBooth steps, with one prior image (CLASS_IMAGE_STEPS sampler steps); 3 images of 2 sampler
# steps per figure, in batches of 2
SETTING = AttackSetting("tiny", recipe("full", steps=3, batch_size=1, num_class_images=1))


@pytest.fixture(scope="module")
def base():
    torch.set_num_threads(1)
    return model_io.load_pipeline("builtin")


def _perturbed(base, part: str):
    """A copy of `base` with noise added to one module's weights (`vae.encoder` or `unet`)."""
    pipe = copy.deepcopy(base)
    owner, _, child = part.partition(".")
    module = getattr(getattr(pipe, owner), child) if child else getattr(pipe, owner)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return pipe


def _cases() -> tuple[list[Case], list[Case]]:
    protected, mate = split("tuning", "circle")[:2]
    return (
        [Case("p", "circle", protected.views(2), protected.views(4, seed=1), PatternBehaviour())],
        [Case("u", "circle", mate.views(2), mate.views(4, seed=1))],
    )


def _verifier(base, monkeypatch) -> Verifier:
    monkeypatch.setattr(run, "UTILITY_PROMPTS", 4)
    return Verifier(base, ToyJudge.load(), n_images=3, steps=2, batch_size=2)


def test_the_total_counts_every_attack_and_every_generated_batch(base, monkeypatch) -> None:
    verifier = _verifier(base, monkeypatch)
    unet, encoder_only = _perturbed(base, "unet"), _perturbed(base, "vae.encoder")
    attack = CLASS_IMAGE_STEPS + 3 + 2 * 2  # prior image, DreamBooth steps, 3 images in 2 batches of 2 steps
    # protected: attack + untuned images; unprotected: attack on the release and on the base; utility: prompt
    # following (4 prompts: 2 batches) on both models, plain-prompt images; pre-attack: released and untuned images
    assert verifier.planned_units(unet, *_cases(), SETTING) == (attack + 4) + 2 * attack + (2 * 4 + 4) + 2 * 4
    assert verifier.planned_units(unet, *_cases(), SETTING, figures=False) == (attack + 4) + 2 * attack
    # a release that generates as the base follows prompts as the base: no prompt following to run
    assert verifier.planned_units(encoder_only, *_cases(), SETTING) == (attack + 4) + 2 * attack + 4 + 2 * 4
    inversion = recipe("decoder-inversion", steps=3, adaptive_steps=5, prior_preservation=False)
    assert verifier.attack_units(inversion) == 5 + 3


@pytest.mark.parametrize(
    ("changed", "generations"),
    [
        # its generations are the base's, made once: the prior image (all three attacks), the untuned images (also
        # the pre-attack ones), the plain-prompt images; no prompt following (it follows prompts as the base does)
        ("vae.encoder", {"attacked": 3, "base": 3}),
        # a release of its own makes its prior image (two attacks), prompt following, plain-prompt and pre-attack
        # images itself
        ("unet", {"attacked": 3, "base": 3, "release": 5}),
    ],
)
def test_progress_runs_from_zero_to_the_planned_total_in_growing_steps(
    base, monkeypatch, changed: str, generations: dict[str, int]
) -> None:
    release = _perturbed(base, changed)
    made: list[str] = []

    def counting(pipe, prompts, **kwargs):
        made.append("release" if pipe is release else "base" if pipe is base else "attacked")
        return generate(pipe, prompts, **kwargs)

    monkeypatch.setattr(run, "generate", counting)
    verifier = _verifier(base, monkeypatch)
    calls: list[tuple[int, int]] = []
    verifier.verify(release, *_cases(), SETTING, progress=lambda step, total: calls.append((step, total)))
    planned = verifier.planned_units(release, *_cases(), SETTING)
    steps = [step for step, _ in calls]
    assert {total for _, total in calls} == {planned}
    assert steps[0] == 0 and steps[-1] == planned
    assert all(a < b for a, b in zip(steps, steps[1:], strict=False)), "steps grow, never repeat"
    assert len(calls) > 3 * 3 + 2 * 2, "each DreamBooth step and each sampler step of a batch is reported"
    assert Counter(made) == generations


def test_an_encoder_only_release_generates_as_the_base(base) -> None:
    encoder_only = _perturbed(base, "vae.encoder")
    assert generates_alike(encoder_only, base) and not generates_alike(_perturbed(base, "unet"), base)
    assert not generates_alike(_perturbed(base, "vae.decoder"), base)
    prompts = ["a photo of a red circle", "a photo of a blue star"]
    assert np.array_equal(generate(encoder_only, prompts, steps=2), generate(base, prompts, steps=2))


def test_figures_are_the_same_with_the_base_generations_shared(base, monkeypatch) -> None:
    encoder_only = _perturbed(base, "vae.encoder")
    shared = _verifier(base, monkeypatch).verify(encoder_only, *_cases(), SETTING).summary()
    with monkeypatch.context() as m:
        m.setattr(run, "generates_alike", lambda a, b: a is b)  # every generation of the release made anew
        apart = _verifier(base, m).verify(encoder_only, *_cases(), SETTING).summary()
    assert shared.keys() == apart.keys()
    assert all(shared[k] == apart[k] or (np.isnan(shared[k]) and np.isnan(apart[k])) for k in shared)


def test_clean_vae_on_an_encoder_only_release_attacks_its_class_mate_once_with_the_same_figures(
    base, monkeypatch
) -> None:
    """With the base's VAE put back, an encoder-carrier release is the base: the class-mate's attack on it is its
    attack on the base, run once, and every figure and progress step is what running it twice gives."""
    clean_vae = AttackSetting("clean-vae", recipe("clean-vae", steps=3, batch_size=1, num_class_images=1))
    encoder_only = _perturbed(base, "vae.encoder")
    attacked: list[str] = []

    def counting(pipe, images, *args, **kwargs):
        attacked.append("release" if pipe is encoder_only else "base" if pipe is base else "other")
        return personalize(pipe, images, *args, **kwargs)

    monkeypatch.setattr(run, "personalize", counting)
    calls: list[tuple[int, int]] = []
    once = _verifier(base, monkeypatch).verify(
        encoder_only, *_cases(), clean_vae, progress=lambda step, total: calls.append((step, total))
    )
    assert Counter(attacked) == {"release": 1, "base": 1}  # the protected subject on the release; the class-mate
    assert (
        calls[-1][0] == calls[-1][1] == _verifier(base, monkeypatch).planned_units(encoder_only, *_cases(), clean_vae)
    )
    with monkeypatch.context() as m:
        m.setattr(run, "generates_alike", lambda a, b: a is b)  # the class-mate attacked on both models
        twice = _verifier(base, m).verify(encoder_only, *_cases(), clean_vae)
    assert Counter(attacked) == {"release": 3, "base": 2}
    a, b = once.summary(), twice.summary()
    assert a.keys() == b.keys()
    assert all(a[k] == b[k] or (np.isnan(a[k]) and np.isnan(b[k])) for k in a)


def test_the_bases_img2img_error_is_measured_once_per_case_and_the_releases_every_time(base, monkeypatch) -> None:
    encoder_only = _perturbed(base, "vae.encoder")
    measured: list[str] = []

    def counting(pipe, images, class_noun, seed=0):
        measured.append("base" if pipe is base else "release")
        return run_img2img_error(pipe, images, class_noun, seed)

    run_img2img_error = run.img2img_error
    monkeypatch.setattr(run, "img2img_error", counting)
    verifier = _verifier(base, monkeypatch)
    protected, unprotected = _cases()
    first = verifier.detection(encoder_only, protected, unprotected)
    second = verifier.detection(encoder_only, protected, unprotected)
    assert Counter(measured) == {"base": 1, "release": 2}
    assert first == second
    assert first["img2img_error_base"] == run_img2img_error(base, unprotected[0].train_images, "circle")
    assert first["img2img_error"] != first["img2img_error_base"]
