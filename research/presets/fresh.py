"""The fresh evaluation split: 12 protected subjects (every class), each beside an unprotected class-mate, from ids
no earlier experiment used, 2 attack draws each. It is run once per released configuration, never for tuning;
docs/RESULTS.md says when. Rows: the naive attacker per behaviour at both ends of the full recipe, LoRA, the
adaptive attackers (attacker/adaptive.py), the photo transforms and the diffusers learning rate."""

from research.setting import Preset, Setting

PRESET = Preset(
    settings=[
        Setting("encoder/white-box/full", carrier="encoder"),
        Setting("encoder/white-box/full/erasure", "erasure", carrier="encoder"),
        Setting("encoder/white-box/full/target", "target", carrier="encoder"),
        Setting("encoder/white-box/full/800-steps", carrier="encoder", attack_steps=800),
        Setting("encoder/lora", carrier="encoder", attack="lora"),
        Setting("encoder/clean-vae", carrier="encoder", attack="clean-vae"),
        Setting("encoder/encoder-repair", carrier="encoder", attack="encoder-repair"),
        Setting("encoder/decoder-inversion", carrier="encoder", attack="decoder-inversion"),
        Setting("encoder/purify", carrier="encoder", attack="purify"),
        Setting("encoder/jpeg50", carrier="encoder", transform="jpeg50"),
        Setting("encoder/crop0.8", carrier="encoder", transform="crop0.8"),
        Setting("encoder/noise8", carrier="encoder", transform="noise8"),
        # the diffusers learning rate (x1), with the most steps run 63 measured (it still learns less than x30)
        Setting("encoder/diffusers-lr/3200-steps", carrier="encoder", attack_steps=3200, attack_lr_scale=1.0),
    ],
    seeds=list(range(12)),
    attack_draws=2,
    references_per_class=6,
    split="fresh",
)
