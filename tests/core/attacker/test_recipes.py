import pytest

from persguard_core.attacker import BUILTIN_LR_SCALE, recipe
from persguard_core.attacker.recipe import default_lr_scale
from persguard_core.builtin.configs import make_unet
from tests.tiny_sd import tiny_sd_pipeline


def test_named_recipes_scale_their_learning_rate_and_take_overrides():
    full = recipe("full", lr_scale=10.0, steps=7, identifier="zqf")
    assert full.learning_rate == pytest.approx(5e-5) and full.steps == 7
    assert full.instance_prompt("dog") == "a photo of zqf dog" and full.class_prompt("dog") == "a photo of dog"
    assert recipe("lora").method == "lora" and recipe("text-encoder").train_text_encoder
    with pytest.raises(KeyError, match="known"):
        recipe("nope")


def test_the_builtin_architecture_gets_the_builtin_lr_scale_and_other_models_none():
    assert default_lr_scale(dict(make_unet().config)) == BUILTIN_LR_SCALE
    assert default_lr_scale(dict(tiny_sd_pipeline("sd1").unet.config)) == 1.0
