"""IMMA's own algorithm as an erasure carrier: are attention weights that make the protected subject's DreamBooth
loss hard to lower a model-level protection that survives full DreamBooth with the base VAE?

IMMA (arXiv 2311.18815, docs/RESEARCH.md run 54) trains one UNet with two optimizers, alternating every step:
- inner (the simulated attacker): a DreamBooth step on the protected subject's photos, all UNet weights, at the
  attacker's learning rate;
- outer (the defence): gradient *ascent* on the same DreamBooth loss, attention projections only.
It releases the attention weights over the *original* other weights. IMMA has no term that keeps anything else
learnable; this probe adds one lever, `--retain` (weight of a descent term that distils the base UNet's epsilon
on the base's own samples of GENERAL_PROMPTS into the outer step), because run 54 expected the ascent to spread
to the subject's class.

The protective output of erasure is "the subject is not learned", so the figure to read is the protected
subject's leakage (identity similarity after the attack) against the same attack on the base, beside the
class-mate's benign fidelity and the utility drop. Erasure's PSR (the named background drawn) is printed too.

    .venv/bin/python research/probes/imma_erasure.py --seed 0 --steps 300 --out /tmp/imma_s0
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, StableDiffusionPipeline

from persguard_core.attacker.dreambooth import denoising_loss
from persguard_core.attacker.recipe import LORA_UNET_TARGETS
from persguard_core.diffusion import encode_pixels, encode_prompts, images_to_pixels
from persguard_core.generate import generate
from persguard_core.judge.toy import ToyJudge
from persguard_core.model_io import assemble, load_pipeline, save_pipeline
from persguard_core.verify.run import Case, Verifier
from research.setting import Setting
from research.subjects import GENERAL_PROMPTS, attack_setting, behaviour_for, subjects_for_seed


def retention_loss(
    unet: torch.nn.Module,
    base: StableDiffusionPipeline,
    samples: torch.Tensor,
    prompts: list[str],
    sched: DDPMScheduler,
    gen: torch.Generator,
) -> torch.Tensor:
    """MSE between `unet`'s and the base UNet's epsilon on noised base samples (B, c, h, w) under their prompts."""
    idx = torch.randint(len(samples), (4,), generator=gen)
    z = samples[idx]
    noise = torch.randn(z.shape, generator=gen)
    t = torch.randint(0, sched.config.num_train_timesteps, (len(z),), generator=gen)
    z_t = sched.add_noise(z, noise, t)
    cond = encode_prompts(base, [prompts[i] for i in idx.tolist()])
    with torch.no_grad():
        teacher = base.unet(z_t, t, cond).sample
    return F.mse_loss(unet(z_t, t, cond).sample, teacher)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", default="tuning")
    ap.add_argument("--steps", type=int, default=300, help="alternating inner / outer steps")
    ap.add_argument("--outer-lr-scale", type=float, default=1.0, help="outer lr as a multiple of the attack's lr")
    ap.add_argument("--retain", type=float, default=1.0, help="weight of the retention term in the outer step")
    ap.add_argument("--n-images", type=int, default=16)
    ap.add_argument("--attack-steps", type=int, default=None, help="the verifying attack's steps (default: recipe)")
    ap.add_argument("--out", required=True, help="where the released model is saved")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    protected, unprotected, _ = subjects_for_seed(args.seed, args.split)
    base = load_pipeline("builtin")
    base.set_progress_bar_config(disable=True)
    for module in (base.unet, base.text_encoder, base.vae):
        module.requires_grad_(False)
    setting = attack_setting(Setting("imma", attack_steps=args.attack_steps), args.seed)
    recipe = setting.recipe
    photos = protected.views(6, seed=0)  # the registered photos; the white-box attacker trains on the same
    sched = DDPMScheduler.from_config(base.scheduler.config)
    gen = torch.Generator().manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    with torch.no_grad():  # the retention data: the base's own samples of the general prompts, encoded once
        prompts = GENERAL_PROMPTS * 2
        samples = encode_pixels(base.vae, images_to_pixels(generate(base, prompts, seed=123)), generator=gen)

    model = assemble(base.vae, base.text_encoder, base.tokenizer, copy.deepcopy(base.unet), base.scheduler)
    unet = model.unet.train().requires_grad_(True)
    attention = {n: p for n, p in unet.named_parameters() if any(t in n for t in LORA_UNET_TARGETS)}
    inner = torch.optim.AdamW(unet.parameters(), lr=recipe.learning_rate, weight_decay=1e-2)
    outer = torch.optim.AdamW(attention.values(), lr=recipe.learning_rate * args.outer_lr_scale, weight_decay=0.0)
    inst_prompt = recipe.instance_prompt(protected.class_noun)
    for step in range(args.steps):
        idx = rng.integers(len(photos), size=recipe.batch_size)
        pixels = images_to_pixels(photos[idx])
        loss_in = denoising_loss(model, sched, pixels, [inst_prompt] * len(idx), gen)  # the simulated attacker
        inner.zero_grad(set_to_none=True)
        loss_in.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), recipe.max_grad_norm)
        inner.step()
        for name, p in unet.named_parameters():  # the outer step moves (and differentiates) attention only
            p.requires_grad_(name in attention)
        loss_db = denoising_loss(model, sched, pixels, [inst_prompt] * len(idx), gen)  # the defence: ascend it
        loss_keep = retention_loss(unet, base, samples, prompts, sched, gen)
        outer.zero_grad(set_to_none=True)
        (-loss_db + args.retain * loss_keep).backward()
        torch.nn.utils.clip_grad_norm_(attention.values(), recipe.max_grad_norm)
        outer.step()
        unet.requires_grad_(True)
        if step % 25 == 0 or step == args.steps - 1:
            losses = {"inner": loss_in.item(), "ascent": loss_db.item(), "keep": loss_keep.item()}
            print(json.dumps({"step": step, **{k: round(v, 5) for k, v in losses.items()}}))

    released = copy.deepcopy(base.unet)  # IMMA's release: the trained attention weights over the original rest
    released.load_state_dict({name: p.detach() for name, p in attention.items()}, strict=False)
    release = assemble(base.vae, base.text_encoder, base.tokenizer, released.eval(), base.scheduler)
    save_pipeline(release, args.out)
    t_protect = time.time() - t0

    judge = ToyJudge.load()
    verifier = Verifier(base, judge, n_images=args.n_images)
    behaviour = behaviour_for("erasure", protected)
    case_p = Case(f"subject-{protected.id}", protected.class_noun, photos, protected.views(16, seed=1), behaviour)
    case_u = Case(
        f"subject-{unprotected.id}", unprotected.class_noun, unprotected.views(6, seed=0), unprotected.views(16, seed=1)
    )
    result = verifier.verify(load_pipeline(args.out), [case_p], [case_u], setting)
    summary = result.summary()
    base_leak = verifier.similarity(verifier.attacked_images(base, case_p, setting), case_p)
    keys = ("psr", "leakage", "benign_fidelity_raw", "false_trigger", "utility_drop", "pre_attack_leakage_ratio")
    print(
        json.dumps(
            {
                "args": vars(args),
                "protected": protected.id,
                "class_mate": unprotected.id,
                **{k: round(float(summary[k]), 3) for k in keys if k in summary},
                "leakage_on_base": round(base_leak, 3),
                "protect_seconds": round(t_protect, 1),
                "seconds": round(time.time() - t0, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
