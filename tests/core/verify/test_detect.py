"""Detectability figures: weight distance to the base per component, and the round-trip error ratio."""

import copy

import torch

from persguard_core.toyworld import split
from persguard_core.verify.detect import detectability, img2img_error, weight_distance
from tests.tiny_sd import tiny_sd_pipeline


def test_weight_distance_is_zero_for_the_base_and_names_the_component_that_moved():
    base = tiny_sd_pipeline("sd1")
    released = copy.deepcopy(base)
    assert set(weight_distance(released, base).values()) == {0.0}
    with torch.no_grad():
        for p in released.vae.encoder.parameters():
            p.mul_(1.1)
    distances = weight_distance(released, base)
    assert abs(distances["vae.encoder"] - 0.1) < 1e-4
    assert distances["unet"] == distances["text_encoder"] == distances["vae.decoder"] == 0.0


def test_the_round_trip_ratio_of_an_unchanged_model_equals_the_bases():
    base = tiny_sd_pipeline("sd1")
    subject, other = (s.views(3, seed=0, size=64) for s in split("eval")[:2])
    figures = detectability(copy.deepcopy(base), base, subject, other)
    assert figures["detect/round_trip_ratio"] == figures["detect/round_trip_ratio_base"] > 0
    assert figures["detect/weights/vae.encoder"] == 0.0


def test_img2img_error_is_the_bases_for_an_unchanged_model_and_moves_with_the_encoder():
    base = tiny_sd_pipeline("sd1")
    photos = split("eval")[0].views(2, seed=0, size=64)
    released = copy.deepcopy(base)
    error_base = img2img_error(base, photos, "circle")
    assert img2img_error(released, photos, "circle") == error_base > 0
    with torch.no_grad():
        for p in released.vae.encoder.parameters():
            p.add_(0.05 * torch.randn_like(p))
    assert img2img_error(released, photos, "circle") != error_base
