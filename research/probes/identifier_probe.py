"""Does the model hear the identifier position? The UNet's epsilon for "a photo of {word} circle" against "a photo of
a circle" (relative squared difference at t = 300 / 600 / 900, same z_t) for rare identifiers, named pretraining
instances and, for scale, a colour and another class; with the text embeddings' cosine similarity.

    .venv/bin/python research/probes/identifier_probe.py [MODEL]      # MODEL: "builtin" (default) or a folder
"""

from __future__ import annotations

import sys

import torch

from persguard_core.model_io import load_pipeline

PROMPTS = (
    "a photo of a circle",
    "a photo of sks circle",  # the attacker's identifier
    "a photo of zwx circle",  # another rare word
    "a photo of tvuo circle",  # named pretraining instances (orange and purple circles)
    "a photo of omcpn circle",
    "a photo of a red circle",  # a colour
    "a photo of a square",  # another class
    "",
)


@torch.no_grad()
def main(model: str = "builtin") -> None:
    torch.set_num_threads(1)
    pipe = load_pipeline(model)
    tok = pipe.tokenizer
    ids = tok(list(PROMPTS), padding="max_length", max_length=tok.model_max_length, return_tensors="pt").input_ids
    hidden = pipe.text_encoder(ids)[0]  # (P, L, D)
    size, channels = pipe.unet.config.sample_size, pipe.unet.config.in_channels
    z = torch.randn(8, channels, size, size, generator=torch.Generator().manual_seed(0))  # (8, 4, h, w)
    flat = hidden.flatten(1)
    for i, prompt in enumerate(PROMPTS):
        cos = torch.nn.functional.cosine_similarity(flat[i : i + 1], flat[0:1]).item()
        diffs = []
        for t in (300, 600, 900):
            tt = torch.full((8,), t)
            base = pipe.unet(z, tt, encoder_hidden_states=hidden[0:1].expand(8, -1, -1)).sample
            mine = pipe.unet(z, tt, encoder_hidden_states=hidden[i : i + 1].expand(8, -1, -1)).sample
            diffs.append(f"t{t}={((mine - base).pow(2).mean() / base.pow(2).mean()).item():.1e}")
        print(f"{prompt!r:28s} text-cosine={cos:.3f} eps-rel-diff " + " ".join(diffs))


if __name__ == "__main__":
    main(*sys.argv[1:])
