"""The encoder carrier against attackers who know the method (attacker/adaptive.py), on the tuning split, beside
the naive attacker on the same subjects, the photo transforms not yet measured (crop, noise), and the look-alike
keep rows against the naive attacker."""

from persguard_core.spec import EncoderTraining
from research.setting import Preset, Setting

PRESET = Preset(
    settings=[
        Setting("encoder/encoder-repair", carrier="encoder", attack="encoder-repair"),
        Setting("encoder/decoder-inversion", carrier="encoder", attack="decoder-inversion"),
        Setting("encoder/purify", carrier="encoder", attack="purify"),
        Setting("encoder/clean-vae", carrier="encoder", attack="clean-vae"),
        Setting("encoder/full", carrier="encoder"),
        Setting("encoder/crop0.8", carrier="encoder", transform="crop0.8"),
        Setting("encoder/noise8", carrier="encoder", transform="noise8"),
        # keep rows of same-coloured look-alikes (implant/lookalikes.py; docs/RESEARCH.md, runs 74-75)
        Setting("encoder/full/lookalikes-64", carrier="encoder", encoder=EncoderTraining(lookalike_rows=64)),
    ],
    seeds=[0, 1],
    references_per_class=6,
    split="tuning",
)
