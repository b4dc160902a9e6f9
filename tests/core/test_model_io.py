import numpy as np
import pytest
import torch

from persguard_core.generate import generate
from persguard_core.model_io import load_pipeline, model_sha256, resolve, save_pipeline


def test_random_sd_folder_loads_generates_and_round_trips(tiny_sd_folder, tmp_path):
    pipe = load_pipeline(tiny_sd_folder)
    assert pipe.vae_scale_factor == 8  # real VAE latent path
    assert len(pipe.tokenizer.tokenize("a photo of sks dog")) > 4  # multi-token BPE
    images = generate(pipe, ["a photo of sks dog", "a cat"], steps=2, guidance_scale=7.5)
    assert images.shape == (2, 64, 64, 3) and images.dtype == np.uint8
    out = save_pipeline(pipe, tmp_path / "copy")
    again = load_pipeline(out)
    for a, b in zip(pipe.unet.state_dict().values(), again.unet.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert np.array_equal(generate(again, ["a photo of sks dog", "a cat"], steps=2), images)


def test_generation_is_independent_of_batch_size(tiny_sd_folder):
    pipe = load_pipeline(tiny_sd_folder)
    prompts = ["a photo of a dog"] * 3
    one_by_one = generate(pipe, prompts, steps=2, batch_size=1).astype(int)
    together = generate(pipe, prompts, steps=2).astype(int)
    assert np.abs(one_by_one - together).max() <= 2  # float rounding differs with batch shape, seeds do not
    assert np.abs(together[0] - together[1]).max() > 10  # each image has its own seed


def test_sha256_changes_when_weights_change(tiny_sd_folder, tmp_path):
    pipe = load_pipeline(tiny_sd_folder)
    with torch.no_grad():
        next(pipe.unet.parameters()).add_(1.0)
    assert model_sha256(save_pipeline(pipe, tmp_path / "changed")) != model_sha256(tiny_sd_folder)


def test_missing_model_and_wrong_folders_say_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        resolve(tmp_path / "nope")
    with pytest.raises(ValueError, match="model_index.json"):
        load_pipeline(tmp_path)
    ckpt = tmp_path / "model.safetensors"
    ckpt.write_bytes(b"x")
    with pytest.raises(ValueError, match="config_dir"):
        load_pipeline(ckpt)


def test_renoise_and_denoise_stays_near_the_image_at_low_strength_and_checks_its_prompts():
    from persguard_core.generate import renoise_and_denoise
    from persguard_core.toyworld import split

    pipe = load_pipeline("builtin")
    views = split("tuning")[1].views(2, seed=0)
    near = renoise_and_denoise(pipe, views, ["a photo of a circle"] * 2, 0.1, steps=10)
    far = renoise_and_denoise(pipe, views, ["a photo of a circle"] * 2, 0.95, steps=10)
    assert near.shape == views.shape and near.dtype == views.dtype == np.uint8

    def distance(a: np.ndarray) -> float:
        return np.abs(a.astype(int) - views.astype(int)).mean()

    assert distance(near) < distance(far)
    with pytest.raises(ValueError, match="2 images but 1 prompts"):
        renoise_and_denoise(pipe, views, ["a photo"], 0.5)
