"""The shared diffusion helpers: z = E(x) as each caller had it written (mean or sample, scaled or not, batched)."""

import numpy as np
import torch

from persguard_core.diffusion import encode_latents, encode_pixels, encode_prompts, images_to_pixels
from tests.tiny_sd import tiny_sd_pipeline

torch.set_num_threads(1)


def test_latents_are_the_scaled_posterior_means_whatever_the_batch_and_samples_draw_from_the_generator():
    pipe = tiny_sd_pipeline("sd1")
    vae, scale = pipe.vae, pipe.vae.config.scaling_factor
    images = np.random.default_rng(0).integers(0, 256, size=(5, 64, 64, 3), dtype=np.uint8)
    pixels = images_to_pixels(images)  # (5, 3, 64, 64)
    assert pixels.shape == (5, 3, 64, 64) and pixels.min() >= -1 and pixels.max() <= 1
    with torch.no_grad():
        mean = vae.encode(pixels).latent_dist.mean  # (5, c, h, w)
        sample = vae.encode(pixels).latent_dist.sample(torch.Generator().manual_seed(3))
        drawn = encode_pixels(vae, pixels, generator=torch.Generator().manual_seed(3))
        chunked = torch.cat([vae.encode(pixels[i : i + 2]).latent_dist.mean for i in range(0, 5, 2)])  # (5, c, h, w)
    assert torch.equal(encode_latents(vae, images), mean * scale)
    assert torch.equal(encode_latents(vae, images, batch=2), chunked * scale)  # a conv's sums depend on the batch
    assert torch.equal(encode_latents(vae, images, scaled=False), mean)
    assert torch.equal(drawn, sample * scale)
    assert not encode_latents(vae, images).requires_grad
    x = pixels[:2].clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(encode_pixels(vae, x).sum(), x)  # differentiable in the pixels (ASPL's PGD)
    assert grad.shape == x.shape


def test_prompts_are_encoded_by_the_pipes_text_encoder_or_the_one_given():
    pipe = tiny_sd_pipeline("sd1")
    with torch.no_grad():
        own = encode_prompts(pipe, ["a photo of a dog", ""])
        other = encode_prompts(pipe, ["a photo of a dog", ""], tiny_sd_pipeline("sd1").text_encoder)
    assert own.shape[0] == 2 and own.shape[1] == pipe.tokenizer.model_max_length
    assert torch.equal(own, other)  # tiny_sd_pipeline is seeded: the same weights
