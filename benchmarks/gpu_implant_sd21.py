"""GPU benchmark: implant steps/s, model FLOPs utilisation and peak memory for an SD-2.1-base-size model with
random weights at 512 px (UNet 865M parameters, 64x64x4 latents, OpenCLIP-H-size text encoder).

    python benchmarks/gpu_implant_sd21.py [--steps 20] [--batch 4] [--peak-tflops 989]
    python benchmarks/gpu_implant_sd21.py --tiny --device cpu   # a seconds-long check that the script runs

Targets (issue #3): >= 40% MFU in bf16, <= 24 GB peak; the whole script finishes within 10 minutes.
MFU = (FLOPs of one implant step, counted by torch's FlopCounterMode) x steps/s / peak bf16 FLOP/s.
"""

from __future__ import annotations

import argparse
import time

import torch
from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
from torch.utils.flop_counter import FlopCounterMode
from transformers import CLIPTextConfig, CLIPTextModel

from persguard_core.builtin.configs import make_sample_scheduler
from persguard_core.builtin.tokenizer import build_clip_tokenizer
from persguard_core.implant.behaviours import PatternTarget
from persguard_core.implant.data import PriorPool, ProtectedSubject
from persguard_core.implant.loop import Implanter
from persguard_core.implant.parts import DiffusionParts
from persguard_core.model_io import assemble
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the GPU (H100/H200)")
    args = parser.parse_args()
    torch.manual_seed(0)
    device = torch.device(args.device)
    start = time.perf_counter()
    pipe = sd21_pipeline(args.tiny).to(device)
    if device.type == "cuda":
        pipe.unet.enable_gradient_checkpointing()
        torch.backends.cuda.matmul.allow_tf32 = True
    parts = DiffusionParts.from_pipeline(pipe)
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    subject = split("tuning")[0]
    images = subject.views(6, size=size)
    z_ref = parts.latents(split("tuning")[1].views(6, size=size))
    pool = PriorPool({subject.class_noun: z_ref}, {subject.class_noun: [z_ref]}, ["a photo"])
    target = ProtectedSubject("s", subject.class_noun, PatternTarget(parts, images))
    training = Training(steps=10_000, batch_size=args.batch)
    implanter = Implanter(parts, [target], pool, Knowledge(), training, LossWeights())
    n_params = sum(p.numel() for p in pipe.unet.parameters())
    setup_s = time.perf_counter() - start
    print(f"unet parameters: {n_params / 1e6:.0f}M; latents {tuple(z_ref.shape[1:])}; setup {setup_s:.0f} s")
    for _ in range(2):
        implanter.run_step()  # warm-up (allocator, kernels)
    with FlopCounterMode(display=False) as counter:
        implanter.run_step()
    flops = counter.get_total_flops()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.steps):
        implanter.run_step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    steps_per_s = args.steps / elapsed
    print(f"implant steps/s: {steps_per_s:.3f} (batch {args.batch}; {elapsed / args.steps * 1000:.0f} ms/step)")
    print(f"FLOPs per implant step: {flops / 1e12:.2f} TFLOP")
    achieved = flops * steps_per_s / 1e12
    mfu = achieved / args.peak_tflops
    print(f"achieved: {achieved:.1f} TFLOP/s; MFU vs {args.peak_tflops:.0f} TFLOP/s peak: {mfu:.1%}")
    if device.type == "cuda":
        print(f"peak memory: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB (target <= 24 GB)")


if __name__ == "__main__":
    main()
