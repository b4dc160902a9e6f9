"""The paper's targets on the paper's own carrier, the UNet backdoor (M8), with docs/METHOD.md's default weights."""

from persguard_core.spec import LossWeights
from research.setting import Preset, Setting

PRESET = Preset(
    settings=[
        Setting("white-box/full/pattern", "pattern"),
        Setting("white-box/full/erasure", "erasure"),
        Setting("white-box/full/target", "target"),
        Setting("gray-box/full", knowledge="gray-box"),
        Setting("black-box/full", knowledge="black-box"),
        Setting("white-box/lora", attack="lora"),
        Setting("white-box/text-encoder", attack="text-encoder"),
        Setting("white-box/low-lr", attack="low-lr"),
        Setting("white-box/jpeg50", transform="jpeg50"),
        Setting("white-box/resize0.5", transform="resize0.5"),
        Setting("white-box/blur", transform="blur"),
        Setting("white-box/mixed", mixed=True),
        Setting("anti-dreambooth/jpeg50", method="anti-dreambooth", transform="jpeg50"),
        Setting("3-subjects/mixed", "mixed", n_subjects=3),
        Setting("10-subjects/mixed", "mixed", n_subjects=10),
        Setting("ablation/no-prior", losses=LossWeights(prior=0.0)),
        Setting("ablation/no-retention", losses=LossWeights(retention=0.0)),
        Setting("ablation/retention-mirror", losses=LossWeights(retention_mode="mirror")),
        Setting("ablation/no-release", losses=LossWeights(release=0.0)),
    ],
    seeds=[0, 1, 2],
)
