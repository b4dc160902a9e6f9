"""The encoder carrier (docs/RESEARCH.md, run 26) on the eval split: the paper's settings and the levers tried on
them. Each setting's seeds are shared with the `paper` preset, which tables a subset of these rows."""

from persguard_core.spec import EncoderTraining
from research.setting import Preset, Setting
from research.subjects import BLACK_BOX_TEMPLATE

# the encoder's budget shared by all protected subjects, before the per-subject budget (RESEARCH.md, run 37)
SHARED_300_STEPS = EncoderTraining(steps=300)
UNCONDITIONAL_AWAY = EncoderTraining(erasure_away="unconditional")  # erasure's x* ranked against "" (run 39)

SETTINGS: list[Setting] = [
    Setting("encoder/white-box/full", carrier="encoder"),
    # the other end of the full recipe's step range (400-800): does PSR follow the attack's learning?
    Setting("encoder/white-box/full/800-steps", carrier="encoder", attack_steps=800),
    Setting("encoder/white-box/full/800-steps/erasure", "erasure", carrier="encoder", attack_steps=800),
    Setting("encoder/white-box/full/800-steps/target", "target", carrier="encoder", attack_steps=800),
    # the robustness rows at 800 steps: does a perturbed attack also protect more as it learns?
    Setting("encoder/black-box/full/800-steps", carrier="encoder", knowledge="black-box", attack_steps=800),
    Setting("encoder/jpeg50/800-steps", carrier="encoder", transform="jpeg50", attack_steps=800),
    Setting("encoder/mixed/800-steps", carrier="encoder", mixed=True, attack_steps=800),
    Setting("encoder/blur/800-steps", carrier="encoder", transform="blur", attack_steps=800),
    Setting("encoder/resize0.5/800-steps", carrier="encoder", transform="resize0.5", attack_steps=800),
    Setting(
        "encoder/3-subjects/mixed/800-steps",
        "mixed",
        n_subjects=3,
        carrier="encoder",
        attack_steps=800,
        encoder=SHARED_300_STEPS,
    ),
    # why black-box beats white-box (run 35): the white-box identifier with the black-box template
    Setting("encoder/white-box/full/black-box-template", carrier="encoder", template=BLACK_BOX_TEMPLATE),
    Setting(
        "encoder/white-box/full/black-box-template/800-steps",
        carrier="encoder",
        template=BLACK_BOX_TEMPLATE,
        attack_steps=800,
    ),
    Setting("encoder/black-box/full", carrier="encoder", knowledge="black-box"),
    Setting("encoder/lora", carrier="encoder", attack="lora"),
    Setting("encoder/jpeg50", carrier="encoder", transform="jpeg50"),
    Setting("encoder/mixed", carrier="encoder", mixed=True),
    Setting("encoder/gray-box/full", carrier="encoder", knowledge="gray-box"),
    Setting("encoder/text-encoder", carrier="encoder", attack="text-encoder"),
    Setting("encoder/low-lr", carrier="encoder", attack="low-lr"),
    Setting("encoder/resize0.5", carrier="encoder", transform="resize0.5"),
    Setting("encoder/blur", carrier="encoder", transform="blur"),
    Setting("encoder/3-subjects/mixed", "mixed", n_subjects=3, carrier="encoder", encoder=SHARED_300_STEPS),
    Setting("encoder/10-subjects/mixed", "mixed", n_subjects=10, carrier="encoder", encoder=SHARED_300_STEPS),
    # the default budget, 300 encoder steps per protected subject (run 37)
    Setting("encoder/10-subjects/mixed/per-subject-steps", "mixed", n_subjects=10, carrier="encoder"),
    # 3 subjects with that budget (900 steps), attacking a class-mate of each protected class
    Setting(
        "encoder/3-subjects/mixed/per-subject-steps", "mixed", n_subjects=3, carrier="encoder", class_mates="each-class"
    ),
    Setting(
        "encoder/3-subjects/mixed/per-subject-steps/800-steps",
        "mixed",
        n_subjects=3,
        carrier="encoder",
        class_mates="each-class",
        attack_steps=800,
    ),
    Setting("encoder/white-box/full/erasure", "erasure", carrier="encoder"),
    Setting(
        "encoder/white-box/full/erasure/unconditional-away", "erasure", carrier="encoder", encoder=UNCONDITIONAL_AWAY
    ),
    Setting(
        "encoder/white-box/full/800-steps/erasure/unconditional-away",
        "erasure",
        carrier="encoder",
        attack_steps=800,
        encoder=UNCONDITIONAL_AWAY,
    ),
    Setting("encoder/white-box/full/target", "target", carrier="encoder"),
    Setting("encoder/jpeg50/erasure", "erasure", carrier="encoder", transform="jpeg50"),
    Setting("anti-dreambooth/jpeg50", method="anti-dreambooth", transform="jpeg50"),
    # L_ENC's ablation: what its keep term buys (every other image must encode as before)
    Setting("encoder/ablation/no-keep", carrier="encoder", encoder=EncoderTraining(keep_weight=0.0)),
    Setting("encoder/gray-box/full/800-steps", carrier="encoder", knowledge="gray-box", attack_steps=800),
    Setting("encoder/text-encoder/800-steps", carrier="encoder", attack="text-encoder", attack_steps=800),
]

PRESET = Preset(settings=SETTINGS, seeds=[0, 1, 2], references_per_class=6)
