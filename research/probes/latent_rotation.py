"""A released latent space that is not the public VAE's: an orthogonal channel map A folded into the encoder, the
decoder and the UNet's first and last convolutions (issue 19, item 3). The release generates exactly what the base
does; a public VAE swapped in (`clean-vae`) meets a UNet that speaks another latent space. How many image pairs does
an attacker need to learn A back?

Fold (A: (c, c) orthogonal, z' = A z; the scheduler's noise stays N(0, I) because A is orthogonal):
- encoder: the mean rows of quant_conv, W_mean' = A W_mean, b_mean' = A b_mean (log-variance rows kept);
- decoder: post_quant_conv reads z = A^T z', W' = W A^T;
- UNet: conv_in reads z = A^T z' (W' = W A^T over input channels), conv_out writes eps' = A eps (W' = A W, b' = A b).

Measured: the fold's error (UNet, encoder, decoder against the base), prompt following of the release, of the
release with the public VAE, and of the release with the public VAE after the attacker's least-squares estimate of
A from N of its own photos (public E(x) vs released E(x), N = 1, 2, 4), and the estimate from the weights alone
(released vs public quant_conv mean rows, no photo at all).

    .venv/bin/python research/probes/latent_rotation.py [--seed 0] [--n-prompts 112]
"""

from __future__ import annotations

import argparse
import copy
import json

import torch
from diffusers import StableDiffusionPipeline

from persguard_core.attacker.adaptive import with_vae
from persguard_core.builtin.evaluate import prompt_following
from persguard_core.diffusion import images_to_pixels
from persguard_core.judge.toy import ToyJudge
from persguard_core.model_io import load_pipeline
from persguard_core.toyworld import subjects


def random_orthogonal(c: int, seed: int) -> torch.Tensor:
    """(c, c) orthogonal, Haar-distributed (QR of a Gaussian with the sign fix)."""
    q, r = torch.linalg.qr(torch.randn(c, c, generator=torch.Generator().manual_seed(seed)))
    return q * torch.sign(torch.diagonal(r))


@torch.no_grad()
def fold(pipe: StableDiffusionPipeline, a: torch.Tensor) -> StableDiffusionPipeline:
    """A copy of `pipe` whose latent space is A times the original's (see the module docstring)."""
    vae, unet = copy.deepcopy(pipe.vae), copy.deepcopy(pipe.unet)
    c = a.shape[0]
    qc = vae.quant_conv  # (2c, 2c, 1, 1): rows [:c] the mean, [c:] the log-variance
    qc.weight[:c] = torch.einsum("ij,jkxy->ikxy", a, qc.weight[:c])
    qc.bias[:c] = a @ qc.bias[:c]
    pq = vae.post_quant_conv  # (c, c, 1, 1) reads z
    pq.weight.copy_(torch.einsum("ojxy,kj->okxy", pq.weight, a))  # W A^T over input channels
    unet.conv_in.weight.copy_(torch.einsum("ojxy,kj->okxy", unet.conv_in.weight, a))
    unet.conv_out.weight.copy_(torch.einsum("ij,jkxy->ikxy", a, unet.conv_out.weight))
    unet.conv_out.bias.copy_(a @ unet.conv_out.bias)
    folded = with_vae(pipe, vae)
    folded.unet = unet
    return folded


@torch.no_grad()
def encoder_means(pipe: StableDiffusionPipeline, images) -> torch.Tensor:
    """(N*h*w, c): the encoder's latent means of uint8 images, one row per latent pixel."""
    pixels = images_to_pixels(images).to(pipe.vae.device, pipe.vae.dtype)
    mean = pipe.vae.encode(pixels).latent_dist.mean  # (N, c, h, w)
    return mean.permute(0, 2, 3, 1).reshape(-1, mean.shape[1])


def estimate(public: StableDiffusionPipeline, release: StableDiffusionPipeline, images) -> torch.Tensor:
    """The attacker's least-squares A_hat with release E(x) ~ A_hat public E(x), from its own photos."""
    x, y = encoder_means(public, images), encoder_means(release, images)  # (M, c) each
    return torch.linalg.lstsq(x, y).solution.T  # (c, c)


@torch.no_grad()
def from_weights(public: StableDiffusionPipeline, release: StableDiffusionPipeline) -> torch.Tensor:
    """A_hat from the two quant_convs' mean rows alone: W_mean' = A W_mean, solved by least squares."""
    c = public.unet.config.in_channels
    w, w_rel = (p.vae.quant_conv.weight[:c].flatten(1) for p in (public, release))  # (c, 2c) each
    return torch.linalg.lstsq(w.T, w_rel.T).solution.T  # (c, c)


@torch.no_grad()
def fold_errors(base: StableDiffusionPipeline, release: StableDiffusionPipeline, a: torch.Tensor, images) -> dict:
    """Relative errors of the fold: E' = A E, D'(A z) = D(z), UNet'(A z) = A UNet(z)."""
    z_base, z_rel = encoder_means(base, images), encoder_means(release, images)
    enc = ((z_rel - z_base @ a.T).norm() / z_base.norm()).item()
    z = torch.randn(4, a.shape[0], 16, 16, generator=torch.Generator().manual_seed(1))
    za = torch.einsum("ij,njxy->nixy", a, z)
    dec_b, dec_r = base.vae.decode(z).sample, release.vae.decode(za).sample
    dec = ((dec_r - dec_b).norm() / dec_b.norm()).item()
    ids = base.tokenizer(["a photo of a red circle"] * 4, padding="max_length", return_tensors="pt").input_ids
    hidden = base.text_encoder(ids)[0]
    t = torch.full((4,), 500)
    e_b = base.unet(z, t, encoder_hidden_states=hidden).sample
    e_r = release.unet(za, t, encoder_hidden_states=hidden).sample
    unet = ((e_r - torch.einsum("ij,njxy->nixy", a, e_b)).norm() / e_b.norm()).item()
    return {"encoder": enc, "decoder": dec, "unet": unet}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-prompts", type=int, default=112)
    args = parser.parse_args()
    torch.set_num_threads(1)
    judge = ToyJudge.load()
    base = load_pipeline("builtin")
    a = random_orthogonal(base.unet.config.in_channels, args.seed)
    release = fold(base, a)
    photos = subjects.subject(2290).views(4, seed=args.seed)  # the attacker's own photos, any subject
    out: dict = {"seed": args.seed, "fold_relative_error": fold_errors(base, release, a, photos)}
    following = {
        "base": prompt_following(base, judge, n=args.n_prompts),
        "release": prompt_following(release, judge, n=args.n_prompts),
        "release+public-vae": prompt_following(with_vae(release, base.vae), judge, n=args.n_prompts),
    }
    out["estimate_error"] = {"weights-only": ((from_weights(base, release) - a).norm() / a.norm()).item()}
    for n in (1, 2, 4):
        a_hat = estimate(base, release, photos[:n])
        out["estimate_error"][n] = ((a_hat - a).norm() / a.norm()).item()
        undone = fold(with_vae(release, base.vae), a_hat.T)  # the attacker folds A_hat^T back into the UNet
        undone = with_vae(undone, base.vae)
        following[f"undone-from-{n}-photos+public-vae"] = prompt_following(undone, judge, n=args.n_prompts)
    out["prompt_following"] = following
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
