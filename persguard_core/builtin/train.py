"""Train the built-in model from scratch on toy-world data and save it as a diffusers folder.

    python -m persguard_core.builtin.train --out persguard_core/assets/builtin-model

Three stages, each seeded: (1) a BPE tokenizer learned on captions; (2) the VAE (MSE + L1 reconstruction,
KL weight 1e-6 as in SD) on scenes, a quarter with random checker stamps so that patterns reconstruct;
(3) the text encoder and UNet jointly on the epsilon loss with min-SNR-5 weighting, 10% caption dropout
for classifier-free guidance, and an EMA of the weights. The text encoder is frozen after this, like CLIP in SD.
`--init-from DIR` continues stage (3) from an earlier run's folder (keeping its tokenizer and VAE).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
from diffusers.training_utils import EMAModel, compute_snr
from transformers import CLIPTextModel, CLIPTokenizer

from persguard_core.builtin import configs
from persguard_core.builtin.tokenizer import build_clip_tokenizer, save_vocab_files
from persguard_core.diffusion import images_to_pixels
from persguard_core.model_io import assemble
from persguard_core.pattern import PatternPlacement, default_pattern, stamp
from persguard_core.toyworld import CLASS_NAMES, captioned_batch

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    seed: int = 0
    threads: int = 2
    tokenizer_captions: int = 20_000
    vae_steps: int = 1500
    vae_batch: int = 64
    vae_lr: float = 1e-3
    steps: int = 5000
    batch: int = 64
    lr: float = 5e-4
    warmup: int = 200
    caption_dropout: float = 0.1
    ema_decay: float = 0.999
    snr_gamma: float = 5.0
    init_from: str = ""  # a model folder of an earlier run to continue the denoiser stage from
    p_named: float = 0.15  # share of denoiser scenes that show a named pretraining instance under its name
    class_weights: str = ""  # e.g. "cross=3": oversample classes the model draws badly (denoiser stage only)
    n_named: int = 0  # use only the first N named instances (0: all 400)
    keep_rare: float = 1.0  # share of the meaningless rare-word captions kept (denoiser stage only)


def parse_class_weights(spec: str) -> np.ndarray | None:
    """ "cross=3,star=2" -> relative weights per CLASS_NAMES entry (1 for unnamed classes); None if empty."""
    if not spec:
        return None
    weights = dict.fromkeys(CLASS_NAMES, 1.0)
    for item in spec.split(","):
        name, _, value = item.partition("=")
        if name.strip() not in weights:
            raise ValueError(f"class weight for unknown class {name!r}; classes: {CLASS_NAMES}")
        weights[name.strip()] = float(value)
    return np.array([weights[c] for c in CLASS_NAMES])


def random_stamps(images: np.ndarray, rng: np.random.Generator, share: float = 0.25) -> np.ndarray:
    """Composite random checker markers on a share of the images (VAE training only)."""
    out = images.copy()
    size = images.shape[1]
    for i in np.flatnonzero(rng.random(len(images)) < share):
        pattern = default_pattern(size, cells=int(rng.integers(2, 5)))
        side = pattern.shape[0]
        pos = (int(rng.integers(0, size - side + 1)), int(rng.integers(0, size - side + 1)))
        out[i] = stamp(images[i], pattern, PatternPlacement(position=pos, opacity=float(rng.uniform(0.5, 1.0))))
    return out


def train_vae(cfg: TrainConfig, rng: np.random.Generator) -> AutoencoderKL:
    vae = configs.make_vae()
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr)
    start = time.time()
    for step in range(cfg.vae_steps):
        images, _, _ = captioned_batch(rng, cfg.vae_batch)
        x = images_to_pixels(random_stamps(images, rng))
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample()).sample
        rec = F.mse_loss(recon, x) + 0.5 * F.l1_loss(recon, x)
        loss = rec + 1e-6 * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == cfg.vae_steps - 1:
            log.info("vae step=%d rec=%.4f elapsed=%.0fs", step, rec.item(), time.time() - start)
    vae.eval().requires_grad_(False)
    latents = torch.cat([vae.encode(images_to_pixels(captioned_batch(rng, 256)[0])).latent_dist.mean for _ in range(8)])
    vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
    log.info("vae scaling_factor=%.4f", vae.config.scaling_factor)
    return vae


def train_denoiser(
    cfg: TrainConfig,
    vae: AutoencoderKL,
    tokenizer: CLIPTokenizer,
    rng: np.random.Generator,
    start: tuple[CLIPTextModel, UNet2DConditionModel] | None = None,
) -> tuple[CLIPTextModel, UNet2DConditionModel]:
    """Jointly train text encoder and UNet on the epsilon loss; returns the EMA weights loaded in both.

    `start`: (text_encoder, unet) to continue from; fresh ones otherwise."""
    if start is None:
        text_encoder = configs.make_text_encoder(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id)
        unet = configs.make_unet()
    else:
        text_encoder, unet = start
        text_encoder.train().requires_grad_(True)
        unet.train().requires_grad_(True)
    scheduler = configs.make_train_scheduler()
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01)

    def lr_at(step: int) -> float:  # linear warm-up, then cosine decay
        return min(1.0, (step + 1) / cfg.warmup) * 0.5 * (1 + np.cos(np.pi * step / cfg.steps))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    ema = EMAModel(params, decay=cfg.ema_decay, use_ema_warmup=True)
    gen = torch.Generator().manual_seed(cfg.seed)
    class_weights = parse_class_weights(cfg.class_weights)
    t_start = time.time()
    for step in range(cfg.steps):
        images, captions, _ = captioned_batch(
            rng,
            cfg.batch,
            p_named=cfg.p_named,
            class_weights=class_weights,
            n_named=cfg.n_named or None,
            keep_rare=cfg.keep_rare,
        )
        captions = ["" if rng.random() < cfg.caption_dropout else c for c in captions]
        with torch.no_grad():
            z = vae.encode(images_to_pixels(images)).latent_dist.sample(gen) * vae.config.scaling_factor
        ids = tokenizer(captions, padding="max_length", truncation=True, return_tensors="pt").input_ids
        noise = torch.randn(z.shape, generator=gen)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (z.shape[0],), generator=gen)
        z_t = scheduler.add_noise(z, noise, t)
        pred = unet(z_t, t, text_encoder(ids).last_hidden_state).sample
        snr = compute_snr(scheduler, t)
        weight = torch.clamp(snr, max=cfg.snr_gamma) / snr  # min-SNR-gamma for epsilon prediction
        loss = (F.mse_loss(pred, noise, reduction="none").mean(dim=(1, 2, 3)) * weight).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        ema.step(params)
        if step % 100 == 0 or step == cfg.steps - 1:
            rate = (step + 1) / (time.time() - t_start)
            log.info(
                "unet step=%d loss=%.4f steps/s=%.2f eta=%.0fs", step, loss.item(), rate, (cfg.steps - step) / rate
            )
    ema.copy_to(params)
    return text_encoder.eval().requires_grad_(False), unet.eval().requires_grad_(False)


def train(cfg: TrainConfig, out: Path) -> Path:
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    t0 = time.time()
    previous, start = None, None
    if cfg.init_from:  # continue the denoiser stage of an earlier run: its tokenizer and VAE are kept
        init = StableDiffusionPipeline.from_pretrained(cfg.init_from, local_files_only=True)
        tokenizer, vae, start = init.tokenizer, init.vae.requires_grad_(False), (init.text_encoder, init.unet)
        previous = json.loads((Path(cfg.init_from) / "training.json").read_text())
    else:
        corpus = [c for _ in range(cfg.tokenizer_captions // 1000) for c in captioned_batch(rng, 1000)[1]]
        tokenizer = build_clip_tokenizer(corpus, max_length=configs.MAX_TOKENS)
        vae = train_vae(cfg, rng)
    t_vae = time.time() - t0
    text_encoder, unet = train_denoiser(cfg, vae, tokenizer, rng, start)
    pipe = assemble(vae, text_encoder, tokenizer, unet, configs.make_sample_scheduler())
    pipe.save_pretrained(out, safe_serialization=True)
    save_vocab_files(tokenizer, out / "tokenizer")
    record = {
        "config": asdict(cfg),
        "seconds_tokenizer_and_vae": round(t_vae, 1),
        "seconds_total": round(time.time() - t0, 1),
        "torch": torch.__version__,
        "data": "persguard_core.toyworld.captioned_batch (p_empty=0.1, p_named and class_weights as in config), "
        "seeded by config.seed",
        "continued_from": previous,
    }
    (out / "training.json").write_text(json.dumps(record, indent=2))
    log.info("saved built-in model to %s in %.0fs", out, time.time() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    for name, default in asdict(TrainConfig()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    args = vars(parser.parse_args())
    out = args.pop("out")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    train(TrainConfig(**args), out)


if __name__ == "__main__":
    main()
