"""Architecture of the built-in model: Stable Diffusion's components, sized for 32x32 toy images on a CPU.

VAE with 2x downsampling (32x32x3 -> 16x16x4 latents), a three-level UNet (16, 8, 4 px) with
cross-attention at 8 and 4 px, and a small CLIP
text encoder; the scheduler is SD 1.x's (scaled-linear betas, 1000 steps, epsilon prediction).
"""

from __future__ import annotations

from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

IMAGE_SIZE = 32
LATENT_SIZE = 16
TEXT_WIDTH = 128
MAX_TOKENS = 32
SD_SCHEDULE = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    prediction_type="epsilon",
    clip_sample=False,
)


def make_vae() -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=16,
        sample_size=IMAGE_SIZE,
    )


def make_unet() -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=LATENT_SIZE,
        in_channels=4,
        out_channels=4,
        # no attention at 16x16: it would triple the step time on a CPU
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(32, 64, 128),
        layers_per_block=1,
        cross_attention_dim=TEXT_WIDTH,
        attention_head_dim=32,
        norm_num_groups=16,
    )


def make_text_encoder(vocab_size: int, bos_id: int, eos_id: int) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=TEXT_WIDTH,
        intermediate_size=TEXT_WIDTH * 2,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=MAX_TOKENS,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
    )
    return CLIPTextModel(config)


def make_train_scheduler() -> DDPMScheduler:
    return DDPMScheduler(**SD_SCHEDULE)


def make_sample_scheduler(prediction_type: str = "epsilon") -> DDIMScheduler:
    """SD's DDIM sampler; "v_prediction" gives the SD 2.x parameterization."""
    schedule = {**SD_SCHEDULE, "prediction_type": prediction_type}
    return DDIMScheduler(**schedule, set_alpha_to_one=False, steps_offset=1)
