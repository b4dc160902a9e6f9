"""Model-level carriers on the tuning split (docs/RESEARCH.md runs 54-): the look-keyed insert-and-keep (M1' above
t = 500, M1 below; x0-weighted; run 9) placed in the UNet weights a LoRA attacker never trains
(`Training.trainable = "lora-frozen"`), attacked by LoRA and by full DreamBooth, beside the same protection trained
in the whole UNet; and M6's preference form (M6p, after APDM) beside run 25's absolute M6 (the levers row
`prompt-keyed/insert-and-keep-800/x0-5/prior16/retention-k16-w1`). Rows that differ only in the attacker share one
protection per seed."""

from dataclasses import replace

from research.presets.levers import SIMULATED_16, high_noise, look_keyed
from research.setting import Preset, Setting


def _preference(name: str, beta: float = 500.0) -> Setting:
    setting = high_noise(name, retention=1.0, **SIMULATED_16)
    update = {"retention_form": "preference", "preference_beta": beta}
    return replace(setting, losses=setting.losses.model_copy(update=update))


def _look_keyed(name: str, trainable: str, attack: str) -> Setting:
    setting = look_keyed(name, "insert-and-keep", retention=0.0, behaviour_x0_weight_max=20.0, trainable=trainable)
    return replace(setting, attack=attack)


PRESET = Preset(
    settings=[
        _look_keyed("unet/look-keyed/lora-frozen/lora", "lora-frozen", "lora"),
        _look_keyed("unet/look-keyed/lora-frozen/full", "lora-frozen", "full"),
        _look_keyed("unet/look-keyed/whole-unet/lora", "unet", "lora"),
        _preference("unet/prompt-keyed-800/retention-k16-w1/preference"),
        _preference("unet/prompt-keyed-800/retention-k16-w1/preference-beta50", beta=50.0),
    ],
    seeds=[0, 1],
    references_per_class=6,
    split="tuning",
)
