"""The adaptive attackers each change what they claim to, on a tiny random-weight model."""

import numpy as np
import pytest
import torch

from persguard_core.attacker import personalize, recipe
from persguard_core.attacker.adaptive import invert_decoder, purify, repair_encoder
from persguard_core.diffusion import encode_latents, images_to_pixels
from persguard_core.toyworld import split
from tests.tiny_sd import tiny_sd_pipeline

TINY = {"lr_scale": 100.0, "steps": 2, "batch_size": 2, "prior_preservation": False}


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return split("eval")[0].views(4, seed=0, size=64)


def _round_trip_error(vae, images: np.ndarray) -> float:
    with torch.no_grad():
        z = encode_latents(vae, images, scaled=False)
        return float(((vae.decode(z).sample - images_to_pixels(images)) ** 2).mean())


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_encoder_repair_lowers_the_round_trip_error_moving_only_a_copy_of_the_encoder(images):
    vae = tiny_sd_pipeline("sd1").vae
    before = _state(vae)
    repaired = repair_encoder(vae, images, steps=30, lr=1e-3)
    assert _round_trip_error(repaired, images) < 0.8 * _round_trip_error(vae, images)
    assert all(torch.equal(v, vae.state_dict()[k]) for k, v in before.items()), "the released VAE is untouched"
    moved = {k.split(".")[0] for k, v in repaired.state_dict().items() if not torch.equal(v, before[k])}
    assert moved == {"encoder", "quant_conv"}


def test_decoder_inversion_finds_latents_the_decoder_reconstructs_without_calling_the_encoder(images, monkeypatch):
    vae = tiny_sd_pipeline("sd1").vae

    def no_encoder(*args, **kwargs):
        raise AssertionError("decoder inversion must not call the encoder")

    monkeypatch.setattr(vae, "encode", no_encoder)
    z = invert_decoder(vae, images, steps=40, lr=5e-2)
    assert z.shape == (4, 4, 8, 8)
    with torch.no_grad():
        error = float(((vae.decode(z / vae.config.scaling_factor).sample - images_to_pixels(images)) ** 2).mean())
        from_zero = float(((vae.decode(torch.zeros_like(z)).sample - images_to_pixels(images)) ** 2).mean())
    assert error < 0.75 * from_zero  # a random-weight decoder reconstructs little better than this


def test_purify_changes_the_photos_and_more_at_a_higher_strength(images):
    pipe = tiny_sd_pipeline("sd1")
    weak, strong = (purify(pipe, images, "dog", s) for s in (0.2, 0.9))
    assert weak.shape == images.shape and weak.dtype == np.uint8

    def distance(a: np.ndarray) -> float:
        return float(np.abs(a.astype(int) - images.astype(int)).mean())

    assert 0 < distance(weak) < distance(strong)


def test_clean_vae_generates_and_trains_through_the_base_vae(images):
    released, base = tiny_sd_pipeline("sd1"), tiny_sd_pipeline("sd2")  # two different VAEs of the same shape
    tuned = personalize(released, images, "dog", recipe("clean-vae", **TINY), base_vae=base.vae)
    assert tuned.vae is base.vae and released.vae is not base.vae
    with pytest.raises(ValueError, match="base_vae"):
        personalize(released, images, "dog", recipe("clean-vae", **TINY))


def test_decoder_inversion_trains_dreambooth_on_the_inverted_latents(images, monkeypatch):
    pipe = tiny_sd_pipeline("sd1")
    calls = []
    monkeypatch.setattr(pipe.vae, "encode", lambda *a, **k: calls.append(1) or (_ for _ in ()).throw(AssertionError))
    attack = recipe("decoder-inversion", **TINY, adaptive_steps=3)
    before = _state(pipe.unet)
    tuned = personalize(pipe, images, "dog", attack)
    assert not calls, "no instance row went through the released encoder"
    assert any(not torch.equal(v, before[k]) for k, v in tuned.unet.state_dict().items())


@pytest.mark.parametrize("name", ["encoder-repair", "purify"])
def test_the_other_adaptive_recipes_run_their_step_then_dreambooth(images, name):
    pipe = tiny_sd_pipeline("sd1")
    before = _state(pipe.unet)
    tuned = personalize(pipe, images, "dog", recipe(name, **TINY, adaptive_steps=2))
    assert any(not torch.equal(v, before[k]) for k, v in tuned.unet.state_dict().items())
    assert (tuned.vae is not pipe.vae) == (name == "encoder-repair")
