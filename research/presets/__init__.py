"""The named experiment presets, one module each: `persguard experiment --preset NAME`."""

from research.presets import adaptive, carrier, fresh, heard_identifier, levers, model_level, paper, smoke, unet
from research.setting import Preset

PRESETS: dict[str, Preset] = {
    "smoke": smoke.PRESET,
    "levers": levers.PRESET,
    "carrier": carrier.PRESET,
    "paper": paper.PRESET,
    "unet": unet.PRESET,
    "adaptive": adaptive.PRESET,
    "fresh": fresh.PRESET,
    "model-level": model_level.PRESET,
    "heard-identifier": heard_identifier.PRESET,
}
