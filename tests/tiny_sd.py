"""Small random-weight Stable Diffusion pipelines built from configs (SD 1.x and 2.x shapes: 8x VAE downsampling,
multi-token CLIP tokenizer, 77-token context), never downloaded: every code path that takes a real SD folder is
tested on these."""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from persguard_core.builtin.configs import make_sample_scheduler
from persguard_core.builtin.tokenizer import build_clip_tokenizer
from persguard_core.model_io import assemble

_CORPUS = [
    "a photo of a dog",
    "a photo of sks dog in the jungle",
    "a painting of a cat on a sofa",
    "an empty street at night",
    "a red car parked near a tree",
    "a portrait of a person smiling",
] * 20


def tiny_sd_pipeline(version: str) -> StableDiffusionPipeline:
    """A random-weight pipeline with SD 1.x ("sd1") or SD 2.x ("sd2": v-prediction, linear projections)."""
    torch.manual_seed(0)
    tokenizer = build_clip_tokenizer(_CORPUS, vocab_size=400, max_length=77)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.eos_token_id,
            hidden_act="gelu" if version == "sd2" else "quick_gelu",
        )
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=64,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
    )
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=(2, 4) if version == "sd2" else 8,
        norm_num_groups=8,
        use_linear_projection=version == "sd2",
    )
    scheduler = make_sample_scheduler("v_prediction" if version == "sd2" else "epsilon")
    return assemble(vae, text_encoder, tokenizer, unet, scheduler)
