"""Attacker recipes: how a user personalizes a released model, DreamBooth style (diffusers example scripts).

The named recipes follow the diffusers DreamBooth defaults (full: lr 5e-6, 400-800 steps; LoRA: lr 1e-4,
500 steps; low-lr: 5e-7, 1000 steps), scaled to the model at hand: a model with few parameters and a small
batch moves less per step at the same learning rate, so `scaled(recipe, lr_scale)` multiplies the learning
rate. For the built-in architecture the scale is `BUILTIN_LR_SCALE` (docs/ATTACKER.md: how it was chosen).
The adaptive recipes (attacker/adaptive.py) run the full recipe after a step aimed at the encoder carrier.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

BUILTIN_LR_SCALE = 30.0
Adaptive = Literal["none", "clean-vae", "encoder-repair", "decoder-inversion", "purify"]


LORA_UNET_TARGETS = ("to_k", "to_q", "to_v", "to_out.0")  # the UNet modules a LoRA attacker adapts (diffusers')


@dataclass(frozen=True)
class AttackRecipe:
    name: str = "full"
    method: Literal["full", "lora"] = "full"
    learning_rate: float = 5e-6
    steps: int = 400
    batch_size: int = 4
    train_text_encoder: bool = False
    text_encoder_lr: float | None = None  # None: same as learning_rate
    prior_preservation: bool = True
    prior_loss_weight: float = 1.0
    num_class_images: int = 50
    lora_rank: int = 4
    identifier: str = "sks"
    template: str = "a photo of {identifier} {class_noun}"
    class_template: str = "a photo of {class_noun}"
    max_grad_norm: float = 1.0
    seed: int = 0
    adaptive: Adaptive = "none"  # the step before DreamBooth (attacker/adaptive.py)
    adaptive_steps: int = 200  # encoder-repair / decoder-inversion optimizer steps
    adaptive_lr: float = 1e-4  # their learning rate (Adam): the encoder's weights, or the latents
    purify_strength: float = 0.25  # purify: img2img strength

    def instance_prompt(self, class_noun: str) -> str:
        return self.template.format(identifier=self.identifier, class_noun=class_noun)

    def class_prompt(self, class_noun: str) -> str:
        return self.class_template.format(class_noun=class_noun)


RECIPES: dict[str, AttackRecipe] = {
    "full": AttackRecipe(name="full", method="full", learning_rate=5e-6, steps=400),
    "lora": AttackRecipe(name="lora", method="lora", learning_rate=1e-4, steps=500),
    "low-lr": AttackRecipe(name="low-lr", method="full", learning_rate=5e-7, steps=1000),
    "text-encoder": AttackRecipe(
        name="text-encoder", method="full", learning_rate=5e-6, steps=400, train_text_encoder=True
    ),
    "clean-vae": AttackRecipe(name="clean-vae", adaptive="clean-vae"),
    "encoder-repair": AttackRecipe(name="encoder-repair", adaptive="encoder-repair"),
    "decoder-inversion": AttackRecipe(name="decoder-inversion", adaptive="decoder-inversion", adaptive_lr=5e-2),
    "purify": AttackRecipe(name="purify", adaptive="purify"),
}


def recipe(name: str, *, lr_scale: float = 1.0, **overrides: Any) -> AttackRecipe:
    """A named recipe with its learning rates multiplied by `lr_scale` and fields overridden."""
    if name not in RECIPES:
        raise KeyError(f"unknown attack recipe {name!r}; known: {tuple(RECIPES)}")
    base = RECIPES[name]
    scaled = replace(
        base,
        learning_rate=base.learning_rate * lr_scale,
        text_encoder_lr=None if base.text_encoder_lr is None else base.text_encoder_lr * lr_scale,
    )
    return replace(scaled, **overrides)


def default_lr_scale(unet_config: dict) -> float:
    """BUILTIN_LR_SCALE for the built-in model's architecture (and models derived from it), else 1."""
    from persguard_core.builtin.configs import make_unet

    builtin = make_unet().config
    keys = ("sample_size", "block_out_channels", "cross_attention_dim", "layers_per_block")
    same = all(tuple(_listify(unet_config.get(k))) == tuple(_listify(builtin[k])) for k in keys)
    return BUILTIN_LR_SCALE if same else 1.0


def _listify(value: object) -> list[object]:
    return list(value) if isinstance(value, list | tuple) else [value]
