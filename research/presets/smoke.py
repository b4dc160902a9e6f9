"""A quick end-to-end check of the runner: one short encoder-carrier row on one seed."""

from research.setting import Preset, Setting

PRESET = Preset(
    settings=[Setting("white-box/full", attack_steps=150, carrier="encoder")],
    seeds=[0],
    n_images=8,
    sample_steps=15,
)
