"""Subject masks from the teacher's cross-attention on the class token (for the erasure target, M2)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention
from transformers import PreTrainedTokenizerBase

from persguard_core.implant.parts import DiffusionParts


class _RecordingProcessor:
    """Plain attention that also keeps the cross-attention probabilities (B*heads, pixels, tokens)."""

    def __init__(self, store: list[torch.Tensor]) -> None:
        self.store = store

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        **_: object,
    ) -> torch.Tensor:
        is_cross = encoder_hidden_states is not None
        context = encoder_hidden_states if is_cross else hidden_states
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        key = attn.head_to_batch_dim(attn.to_k(context))
        value = attn.head_to_batch_dim(attn.to_v(context))
        probs = attn.get_attention_scores(query, key, attention_mask)
        if is_cross:
            self.store.append(probs)
        out = attn.batch_to_head_dim(torch.bmm(probs, value))
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + hidden_states
        return out / attn.rescale_output_factor


def token_positions(tokenizer: PreTrainedTokenizerBase, prompt: str, word: str) -> list[int]:
    """Indices of `word`'s tokens in the tokenized prompt (with the start token at 0)."""
    ids = tokenizer(prompt).input_ids
    word_ids = tokenizer(word, add_special_tokens=False).input_ids
    for start in range(len(ids) - len(word_ids) + 1):
        if ids[start : start + len(word_ids)] == word_ids:
            return list(range(start, start + len(word_ids)))
    raise ValueError(f"{word!r} not found in the tokens of {prompt!r}")


@torch.no_grad()
def class_token_mask(
    parts: DiffusionParts, z: torch.Tensor, class_noun: str, t: int = 300, threshold: float = 0.5
) -> torch.Tensor:
    """(N, 1, h, w) binary mask where the teacher attends to the class noun in "a photo of a {class}".

    Attention maps of every cross-attention layer are averaged over heads, upsampled to latent size and
    averaged; a pixel is in the mask when its attention exceeds `threshold` x the image's maximum.
    """
    prompt = f"a photo of a {class_noun}"
    positions = token_positions(parts.pipe.tokenizer, prompt, class_noun)
    store: list[torch.Tensor] = []
    unet = parts.teacher
    saved = unet.attn_processors
    unet.set_attn_processor(_RecordingProcessor(store))
    try:
        tt = torch.full((len(z),), t, device=z.device)
        noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(0)).to(z)
        unet(parts.add_noise(z, noise, tt), tt, parts.teacher_embed([prompt] * len(z)))
    finally:
        unet.set_attn_processor(saved)
    h, w = z.shape[-2:]
    maps = []
    for probs in store:
        n_pix = probs.shape[1]
        side = int(math.isqrt(n_pix))
        m = probs[..., positions].sum(-1).view(len(z), -1, side, n_pix // side).mean(1, keepdim=True)
        maps.append(F.interpolate(m, size=(h, w), mode="bilinear", align_corners=False))
    heat = torch.stack(maps).mean(0)  # (N, 1, h, w)
    heat = heat / heat.flatten(1).amax(1).view(-1, 1, 1, 1).clamp_min(1e-8)
    return (heat > threshold).float()
