import pytest
import torch

from persguard_core.attacker import dreambooth, recipe
from persguard_core.toyworld import split
from tests.tiny_sd import tiny_sd_pipeline


@pytest.fixture(scope="module")
def images():
    return split("eval")[0].views(4, seed=0, size=64)


def _state(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("name", ["full", "lora", "text-encoder"])
def test_dreambooth_tunes_a_copy_and_leaves_the_input_pipeline_untouched(images, name):
    pipe = tiny_sd_pipeline("sd1")
    unet_before, text_before = _state(pipe.unet), _state(pipe.text_encoder)
    attack = recipe(name, lr_scale=100.0, steps=3, batch_size=2, num_class_images=2)
    tuned = dreambooth(pipe, images, "dog", attack, prior_images=images[:2])
    assert all(torch.equal(v, pipe.unet.state_dict()[k]) for k, v in unet_before.items())
    assert all(torch.equal(v, pipe.text_encoder.state_dict()[k]) for k, v in text_before.items())
    tuned_unet = tuned.unet.state_dict()
    if name == "lora":
        lora = [k for k in tuned_unet if "lora_" in k]
        assert lora and any(not torch.equal(tuned_unet[k], torch.zeros_like(tuned_unet[k])) for k in lora)
    else:
        assert any(not torch.equal(tuned_unet[k], v) for k, v in unet_before.items())
    text_changed = any(not torch.equal(tuned.text_encoder.state_dict()[k], v) for k, v in text_before.items())
    assert text_changed == (name == "text-encoder")


def test_a_lora_attack_is_the_same_whatever_drew_from_the_global_rng_before(images):
    pipe = tiny_sd_pipeline("sd1")
    attack = recipe("lora", lr_scale=100.0, steps=2, batch_size=2, num_class_images=2)
    tuned = []
    for draws in (0, 5):  # e.g. a protection run before the attack, in the same process
        torch.manual_seed(123)
        torch.randn(draws)
        state = dreambooth(pipe, images, "dog", attack, prior_images=images[:2]).unet.state_dict()
        tuned.append({k: v for k, v in state.items() if "lora_" in k})
    assert tuned[0] and all(torch.equal(v, tuned[1][k]) for k, v in tuned[0].items())


def test_dreambooth_refuses_an_empty_image_set(images):
    with pytest.raises(ValueError, match="at least one"):
        dreambooth(tiny_sd_pipeline("sd1"), images[:0], "dog", recipe("full", steps=1))
