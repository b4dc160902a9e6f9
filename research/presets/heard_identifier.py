"""Does a UNet backdoor keyed on the attacker's prompt work once the base model hears the identifier? (issue 19,
item 1; docs/RESEARCH.md run 64). Run 25's prompt-keyed M6 row of the `levers` preset, with the identifier as the
one lever: "sks", which no built-in model hears, against "zwc", which the stage-4 model hears (run 60). Run it on
a model folder with `--base-model` and a `--runs` folder per model."""

from dataclasses import replace

from research.presets.levers import SIMULATED_16, high_noise
from research.setting import Preset

M6_ROW = high_noise("prompt-keyed/insert-and-keep-800/x0-5/prior16/retention-k16-w1", retention=1.0, **SIMULATED_16)

PRESET = Preset(
    settings=[replace(M6_ROW, name=f"{M6_ROW.name}/{word}", identifier=word) for word in ("sks", "zwc")],
    seeds=[0, 1],
    n_images=8,
    references_per_class=6,
    split="tuning",
)
