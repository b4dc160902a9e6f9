"""Does the model hear the identifiers an attacker would use? For each held-out identifier (never in pretraining;
`captions.HELD_OUT_IDENTIFIERS`, sks first) and two other rare words, the UNet's epsilon change when "a photo of a
circle" becomes "a photo of {word} circle", as a share of the change a colour word makes ("a photo of a red
circle"), at t = 300 and 600 on the same z_t (relative squared difference, as `identifier_probe.py`). FOUNDATION's bar
for a base model that hears identifiers: a share of at least 1/3.

    .venv/bin/python research/probes/held_out_identifiers.py MODEL [MODEL ...]   # "builtin" or a folder
"""

from __future__ import annotations

import sys

import torch

from persguard_core.model_io import load_pipeline
from persguard_core.toyworld.captions import HELD_OUT_IDENTIFIERS

OTHER_RARE_WORDS = ("zwx", "ohwx")
TIMESTEPS = (300, 600)


@torch.no_grad()
def shares(model: str) -> dict[str, list[float]]:
    """word -> its epsilon change as a share of the colour word's, per timestep of TIMESTEPS."""
    pipe = load_pipeline(model)
    tok = pipe.tokenizer
    words = ["sks", *sorted(HELD_OUT_IDENTIFIERS - {"sks"}), *OTHER_RARE_WORDS]
    prompts = ["a photo of a circle", "a photo of a red circle", *(f"a photo of {w} circle" for w in words)]
    ids = tok(prompts, padding="max_length", max_length=tok.model_max_length, return_tensors="pt").input_ids
    hidden = pipe.text_encoder(ids)[0]  # (P, L, D)
    size, channels = pipe.unet.config.sample_size, pipe.unet.config.in_channels
    z = torch.randn(8, channels, size, size, generator=torch.Generator().manual_seed(0))  # (8, c, h, w)
    change = torch.zeros(len(prompts), len(TIMESTEPS))
    for j, t in enumerate(TIMESTEPS):
        tt = torch.full((8,), t)
        base = pipe.unet(z, tt, encoder_hidden_states=hidden[0:1].expand(8, -1, -1)).sample
        for i in range(1, len(prompts)):
            eps = pipe.unet(z, tt, encoder_hidden_states=hidden[i : i + 1].expand(8, -1, -1)).sample
            change[i, j] = (eps - base).pow(2).mean() / base.pow(2).mean()
    return {w: (change[i + 2] / change[1]).tolist() for i, w in enumerate(words)}


def main(models: list[str]) -> None:
    torch.set_num_threads(1)
    for model in models:
        print(model)
        for word, share in shares(model).items():
            held_out = "held-out" if word in HELD_OUT_IDENTIFIERS else "rare"
            print(f"  {word:6s} {held_out:8s} " + " / ".join(f"{s:.3f}" for s in share))


if __name__ == "__main__":
    main(sys.argv[1:] or ["builtin"])
