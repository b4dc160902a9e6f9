"""The paper's result table on the service's carrier: the `carrier` rows that answer each of its targets (each
setting at both ends of the full recipe's 400-800 steps where run at both, the service's defaults, the data-level
baseline and L_ENC's keep ablation). Run with `--runs research/results/carrier/runs` to share that preset's seeds.
The UNet carrier's loss ablations are the `unet` preset's."""

from research.presets.carrier import SETTINGS as CARRIER_SETTINGS
from research.setting import Preset

ROWS = (
    "encoder/white-box/full",
    "encoder/white-box/full/erasure",
    "encoder/white-box/full/target",
    "encoder/white-box/full/800-steps",
    "encoder/white-box/full/800-steps/erasure",
    "encoder/white-box/full/800-steps/target",
    "encoder/gray-box/full",
    "encoder/gray-box/full/800-steps",
    "encoder/black-box/full",
    "encoder/black-box/full/800-steps",
    "encoder/lora",
    "encoder/text-encoder",
    "encoder/text-encoder/800-steps",
    "encoder/low-lr",
    "encoder/jpeg50",
    "encoder/jpeg50/800-steps",
    "encoder/resize0.5",
    "encoder/resize0.5/800-steps",
    "encoder/blur",
    "encoder/blur/800-steps",
    "encoder/mixed",
    "encoder/mixed/800-steps",
    "encoder/3-subjects/mixed/per-subject-steps",
    "encoder/3-subjects/mixed/per-subject-steps/800-steps",
    "encoder/10-subjects/mixed/per-subject-steps",
    "encoder/jpeg50/erasure",
    "anti-dreambooth/jpeg50",
    "encoder/ablation/no-keep",
)
_BY_NAME = {setting.name: setting for setting in CARRIER_SETTINGS}

PRESET = Preset(settings=[_BY_NAME[name] for name in ROWS], seeds=[0, 1, 2], references_per_class=6)
