"""GPU benchmark: implant steps/s, model FLOPs utilisation and peak memory for an SD-2.1-base-size model with
random weights at 512 px (UNet 865M parameters, 64x64x4 latents, OpenCLIP-H-size text encoder).

    python benchmarks/gpu_implant_sd21.py [--steps 20] [--batch 4] [--peak-tflops 989]
    python benchmarks/gpu_implant_sd21.py --carrier encoder [--batch 32]   # the default carrier: the VAE encoder
    python benchmarks/gpu_implant_sd21.py --tiny --device cpu   # a seconds-long check that the script runs

Targets (docs/BENCHMARKS.md): >= 40% MFU in bf16, <= 24 GB peak; the whole script finishes within 10 minutes.
MFU = (FLOPs of one implant step, counted by torch's FlopCounterMode) x steps/s / peak bf16 FLOP/s.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
from torch.utils.flop_counter import FlopCounterMode
from transformers import CLIPTextConfig, CLIPTextModel

from persguard_core.builtin.configs import make_sample_scheduler
from persguard_core.builtin.tokenizer import build_clip_tokenizer
from persguard_core.implant.behaviours import PatternTarget
from persguard_core.implant.data import PriorPool, ProtectedSubject
from persguard_core.implant.encoder import EncoderImplanter, EncoderSubject
from persguard_core.implant.parts import DiffusionParts
from persguard_core.implant.unet_loop import Implanter
from persguard_core.model_io import assemble
from persguard_core.pattern import default_pattern, stamp
from persguard_core.spec import Knowledge, LossWeights, Training
from persguard_core.toyworld import split


def sd21_pipeline(tiny: bool) -> StableDiffusionPipeline:
    """SD-2.1-base architecture (or a tiny version of it), random weights, float32 master weights."""
    width = (32, 64, 64, 64) if tiny else (320, 640, 1280, 1280)
    heads = (2, 2, 2, 2) if tiny else (5, 10, 20, 20)
    text_width = 64 if tiny else 1024
    tokenizer = build_clip_tokenizer(
        ["a photo of sks dog", "a photo of a dog in the snow"] * 20, vocab_size=600, max_length=77
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=text_width,
            intermediate_size=text_width * 4,
            num_hidden_layers=2 if tiny else 23,
            num_attention_heads=4 if tiny else 16,
            max_position_embeddings=77,
            hidden_act="gelu",
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.eos_token_id,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=8 if tiny else 64,
        block_out_channels=width,
        layers_per_block=1 if tiny else 2,
        attention_head_dim=heads,
        cross_attention_dim=text_width,
        use_linear_projection=True,
        norm_num_groups=32,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 32, 64, 64) if tiny else (128, 256, 512, 512),
        layers_per_block=1 if tiny else 2,
        latent_channels=4,
        norm_num_groups=32,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        sample_size=64 if tiny else 512,
    )
    scheduler = make_sample_scheduler("v_prediction")
    return assemble(vae, text_encoder, tokenizer, unet, scheduler)


def unet_step(pipe: StableDiffusionPipeline, batch: int) -> Callable[[], object]:
    """One step of the UNet carrier (M8 with M6 and M7, the default loss weights) on a toy subject."""
    if pipe.device.type == "cuda":
        pipe.unet.enable_gradient_checkpointing()
    parts = DiffusionParts.from_pipeline(pipe)
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    subject = split("tuning")[0]
    z_ref = parts.latents(split("tuning")[1].views(6, size=size))
    pool = PriorPool({subject.class_noun: z_ref}, {subject.class_noun: [z_ref]}, ["a photo"])
    target = ProtectedSubject("s", subject.class_noun, PatternTarget(parts, subject.views(6, size=size)))
    implanter = Implanter(parts, [target], pool, Knowledge(), Training(steps=10_000, batch_size=batch), LossWeights())
    print(f"unet parameters: {sum(p.numel() for p in pipe.unet.parameters()) / 1e6:.0f}M")
    return implanter.run_step


def encoder_step(pipe: StableDiffusionPipeline, batch: int) -> Callable[[], object]:
    """One step of the encoder carrier (L_ENC, the pattern) on a toy subject, keeping a class-mate's views."""
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    pattern = default_pattern(size)
    subject = EncoderSubject(split("tuning")[0].views(6, size=size), lambda x, rng: stamp(x, pattern))
    keep = split("tuning")[1].views(6, size=size)
    implanter = EncoderImplanter(
        pipe.vae, [subject], keep, steps=10_000, learning_rate=1e-3, batch_size=batch, keep_weight=1.0, seed=0
    )
    print(f"encoder parameters: {sum(p.numel() for p in implanter.params) / 1e6:.0f}M")
    return implanter.step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--carrier", choices=["unet", "encoder"], default="unet")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=None, help="rows per step (default: unet 4, encoder 32)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the GPU (H100/H200)")
    args = parser.parse_args()
    batch = args.batch or (4 if args.carrier == "unet" else 32)
    torch.manual_seed(0)
    device = torch.device(args.device)
    start = time.perf_counter()
    pipe = sd21_pipeline(args.tiny).to(device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    step = (unet_step if args.carrier == "unet" else encoder_step)(pipe, batch)
    print(
        f"carrier {args.carrier}; {pipe.unet.config.sample_size * pipe.vae_scale_factor} px; setup "
        f"{time.perf_counter() - start:.0f} s"
    )
    for _ in range(2):
        step()  # warm-up (allocator, kernels)
    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    steps_per_s = args.steps / elapsed
    print(f"implant steps/s: {steps_per_s:.3f} (batch {batch}; {elapsed / args.steps * 1000:.0f} ms/step)")
    print(f"FLOPs per implant step: {flops / 1e12:.2f} TFLOP")
    achieved = flops * steps_per_s / 1e12
    mfu = achieved / args.peak_tflops
    print(f"achieved: {achieved:.1f} TFLOP/s; MFU vs {args.peak_tflops:.0f} TFLOP/s peak: {mfu:.1%}")
    if device.type == "cuda":
        print(f"peak memory: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB (target <= 24 GB)")


if __name__ == "__main__":
    main()
