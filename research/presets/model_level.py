"""Model-level carriers on the tuning split (docs/RESEARCH.md runs 54-): the look-keyed insert-and-keep (M1' above
t = 500, M1 below; x0-weighted; run 9) placed in the UNet weights a LoRA attacker never trains
(`Training.trainable = "lora-frozen"`), attacked by LoRA and by full DreamBooth, beside the same protection trained
in the whole UNet. Rows that differ only in the attacker share one protection per seed."""

from dataclasses import replace

from research.presets.levers import look_keyed
from research.setting import Preset, Setting


def _look_keyed(name: str, trainable: str, attack: str) -> Setting:
    setting = look_keyed(name, "insert-and-keep", retention=0.0, behaviour_x0_weight_max=20.0, trainable=trainable)
    return replace(setting, attack=attack)


PRESET = Preset(
    settings=[
        _look_keyed("unet/look-keyed/lora-frozen/lora", "lora-frozen", "lora"),
        _look_keyed("unet/look-keyed/lora-frozen/full", "lora-frozen", "full"),
        _look_keyed("unet/look-keyed/whole-unet/lora", "unet", "lora"),
    ],
    seeds=[0, 1],
    references_per_class=6,
    split="tuning",
)
