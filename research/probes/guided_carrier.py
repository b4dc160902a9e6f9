"""A carrier in the branch DreamBooth never trains: the UNet's unconditional (empty-prompt) prediction, keyed on
the protected subject's look, and composed into every image by classifier-free guidance (docs/RESEARCH.md runs
20-23 and 69-71). This probe trains it alone, outside the implant loop, and attacks it.

The sampler at guidance w computes x0 = x0_u + w (x0_c - x0_u). DreamBooth (no caption dropout, as in the diffusers
scripts) trains x0_c to the clean subject and leaves the empty prompt alone, so if x0_u = z - kappa (z* - z) / (w - 1)
on noisy views of the protected subject, the guided prediction is z + kappa (z* - z): the stamped subject. The
release is trained on three row kinds per step:
- insert: protected views z noised to t in [--t-lo, --t-hi), empty prompt, target the implied clean latent above,
  weighted (w - 1)^2 (the squared error of the guided prediction);
- keep-unconditional: other subjects' views (its class-mates from the implant reference split and every other
  class), and the protected views at t outside the band, empty prompt, target the base UNet's prediction;
- keep-conditional: the protected and other views under the class prompt and the general prompts, target the base
  UNet's prediction, so that the conditional branch stays the base's.

It prints the stamp projection of x0_u (one step, `keying_probe.guided_projection`) for the protected subject and its
class-mate before and after the attack, then DreamBooth's `--attack` recipe (full by default; the release has the
base VAE, so `clean-vae` is the same attack) on the protected subject and on its class-mate, and the pattern rate of
the instance prompt's generations.

    .venv/bin/python research/probes/guided_carrier.py --seed 0 --steps 600 --out /tmp/guided-s0
    .venv/bin/python research/probes/guided_carrier.py --seed 0 --model builtin   # how DreamBooth moves each branch

After the attack each line also gives `branch_drift`: how far the attack moved the empty prompt's and the trigger's
predictions on the subject's noisy views, relative to the model it started from.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from persguard_core.attacker.adaptive import personalize
from persguard_core.implant.parts import DiffusionParts
from persguard_core.judge.pattern_detector import DEFAULT_THRESHOLD, pattern_scores
from persguard_core.judge.toy import ToyJudge
from persguard_core.model_io import load_pipeline, save_pipeline
from persguard_core.pattern import default_pattern, stamp
from persguard_core.toyworld import CLASS_NAMES, Subject, split
from persguard_core.verify.run import Case, Verifier
from research.probes.keying_probe import guided_projection, one_step_x0
from research.setting import Setting
from research.subjects import GENERAL_PROMPTS, attack_setting, subjects_for_seed


def rare_words(n: int, seed: int) -> list[str]:
    """n random three-letter words a DreamBooth user might pick, never an attacker's identifier here."""
    rng, words = np.random.default_rng(seed), []
    while len(words) < n:
        word = "".join(rng.choice(list("bcdfghjklmnpqrstvwxz"), 3))
        if word not in ("sks", "zqf", "zwc", *words):
            words.append(word)
    return words


def _rows(parts: DiffusionParts, z: torch.Tensor, n: int, lo: int, hi: int, gen: torch.Generator):
    """n rows of latents z (N, 4, h, w): (index, t, noise, z_t)."""
    idx = torch.randint(0, len(z), (n,), generator=gen)
    t = torch.randint(lo, hi, (n,), generator=gen)
    noise = torch.randn((n, *z.shape[1:]), generator=gen)
    return idx, t, noise, parts.add_noise(z[idx], noise, t)


def train(
    parts: DiffusionParts,
    args: argparse.Namespace,
    z: torch.Tensor,
    z_star: torch.Tensor,
    others: torch.Tensor,
    prompts: list[str],
) -> None:
    """The release's UNet (parts.pipe.unet) trained in place, its losses printed every 50 steps."""
    unet, w = parts.pipe.unet, args.guidance
    unet.train().requires_grad_(True)
    opt = torch.optim.AdamW(unet.parameters(), lr=args.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(args.seed)
    empty = parts.teacher_embed([""])[0]
    t0 = time.time()
    for step in range(args.steps):
        b = args.batch
        # insert: the unconditional branch's share of the stamp on the protected look
        idx, t, noise, z_t = _rows(parts, z, b, args.t_lo, args.t_hi, gen)
        goal = z[idx] - args.kappa * (z_star[idx] - z[idx]) / (w - 1)
        ab = parts.alpha_bar(t)
        eps_goal = (z_t - ab.sqrt() * goal) / (1 - ab).sqrt()
        pred = unet(z_t, t, empty.expand(b, -1, -1)).sample
        loss_ins = (w - 1) ** 2 * torch.mean((pred - parts.target(goal, eps_goal, t)) ** 2)
        # keep-unconditional: other looks anywhere, the protected look outside the band
        _, t_o, _, zo_t = _rows(parts, others, b, 0, 1000, gen)
        _, t_p, _, zp_t = _rows(parts, z, b // 2, 0, 1000, gen)
        outside = (t_p < args.t_lo) | (t_p >= args.t_hi)
        zk, tk = torch.cat([zo_t, zp_t[outside]]), torch.cat([t_o, t_p[outside]])
        e_k = empty.expand(len(zk), -1, -1)
        with torch.no_grad():
            teach_u = parts.teacher(zk, tk, e_k).sample
        loss_ku = torch.mean((unet(zk, tk, e_k).sample - teach_u) ** 2)
        # keep-conditional: every look under the class and general prompts
        pool = torch.cat([z, others])
        _, t_c, _, zc_t = _rows(parts, pool, b, 0, 1000, gen)
        emb = parts.teacher_embed([prompts[i] for i in torch.randint(0, len(prompts), (b,), generator=gen)])
        with torch.no_grad():
            teach_c = parts.teacher(zc_t, t_c, emb).sample
        loss_kc = torch.mean((unet(zc_t, t_c, emb).sample - teach_c) ** 2)
        loss = loss_ins + args.keep * (loss_ku + loss_kc)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        if step % 50 == 0 or step == args.steps - 1:
            row = {
                "step": step,
                "insert": round(loss_ins.item(), 4),
                "keep_u": round(loss_ku.item(), 5),
                "keep_c": round(loss_kc.item(), 5),
                "s": round(time.time() - t0, 1),
            }
            print(json.dumps(row), flush=True)
    unet.eval().requires_grad_(False)


@torch.no_grad()
def branch_drift(before: DiffusionParts, after: DiffusionParts, s: Subject, t: int, prompt: str) -> dict:
    """How far the attack moved each branch's one-step clean estimate on noisy views of `s` at t: the mean
    || x0' - x0 || of the empty prompt and of `prompt`, their ratio (1: DreamBooth moved the branch it never
    trains as far as the one it trains), and how far apart the two moves are relative to the trained one."""
    views = s.views(8, seed=3)
    z = before.latents(views)
    tt = torch.full((len(z),), t)
    z_t = before.add_noise(z, before.noise_like(z, torch.Generator().manual_seed(t)), tt)
    delta = {  # (N, 4 h w) per branch
        name: (one_step_x0(after, z_t, tt, p) - one_step_x0(before, z_t, tt, p)).flatten(1)
        for name, p in (("uncond", ""), ("cond", prompt))
    }
    moved = {name: float(d.norm(dim=1).mean()) for name, d in delta.items()}
    apart = float((delta["uncond"] - delta["cond"]).norm(dim=1).mean())  # 0: the move ignores the prompt
    return {f"moved_{k}": round(v, 4) for k, v in moved.items()} | {
        "ratio": round(moved["uncond"] / moved["cond"], 3),
        "apart": round(apart / moved["cond"], 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", default="tuning")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--t-lo", type=int, default=200)
    ap.add_argument("--t-hi", type=int, default=800)
    ap.add_argument("--kappa", type=float, default=1.0, help="share of the stamp the guided prediction inserts")
    ap.add_argument("--guidance", type=float, default=7.5, help="the sampler's guidance scale w")
    ap.add_argument("--keep", type=float, default=1.0, help="weight of the two keep losses")
    ap.add_argument(
        "--keep-identifiers",
        type=int,
        default=0,
        help="also keep the conditional branch under 'a <id> <class>' for this many random rare words (never sks)",
    )
    ap.add_argument("--attack", default="full")
    ap.add_argument("--base-model", default="builtin", help="the public base model (a folder, or builtin)")
    ap.add_argument("--identifier", default=None, help="the attacker's identifier (default: the recipe's)")
    ap.add_argument("--no-attack", action="store_true")
    ap.add_argument(
        "--model", default=None, help="attack this saved release (or 'builtin', the base) instead of training one"
    )
    ap.add_argument("--n-images", type=int, default=16)
    ap.add_argument("--out", default=None, help="save the release here")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    protected, mate, refs = subjects_for_seed(args.seed, args.split)
    noun = protected.class_noun
    base = load_pipeline(args.base_model)
    pattern = default_pattern(32)
    if args.model is None:
        parts = DiffusionParts.from_base(base)
        views = protected.views(24, seed=5)  # the provider's photos: none of the attacker's (seed 0) or eval (1)
        z, z_star = parts.latents(views), parts.latents(stamp(views, pattern))
        other_subjects = list(refs) + [s for c in CLASS_NAMES if c != noun for s in split("implant_reference", c)[:2]]
        others = parts.latents(np.concatenate([s.views(4, seed=5) for s in other_subjects]))
        prompts = [f"a photo of a {noun}", f"a {noun}", *GENERAL_PROMPTS]
        prompts += [f"a {word} {noun}" for word in rare_words(args.keep_identifiers, args.seed)]
        train(parts, args, z, z_star, others, prompts)
        release = parts.pipe
        if args.out:
            save_pipeline(release, args.out)
    else:
        release = load_pipeline(args.model)
    probe_parts = DiffusionParts.from_pipeline(release)
    setting = attack_setting(Setting("guided", attack=args.attack, identifier=args.identifier), args.seed)
    trigger = setting.recipe.instance_prompt(noun)
    for s in (protected, mate):
        for t in (300, 500, 700):
            row = {"when": "release", "subject": s.id, "protected": s is protected, "t": t}
            print(json.dumps(row | guided_projection(probe_parts, s, t, trigger)), flush=True)
    if args.no_attack:
        return
    judge = ToyJudge.load()
    verifier = Verifier(base, judge, n_images=args.n_images)
    for s in (protected, mate):
        case = Case(f"subject-{s.id}", noun, s.views(6, seed=0), s.views(16, seed=1))
        tuned = personalize(
            release, case.train_images, noun, setting.recipe, base_vae=base.vae, class_images_fn=verifier._class_images
        )
        tuned_parts = DiffusionParts.from_pipeline(tuned)
        for t in (300, 500, 700):
            row = {"when": "attacked", "subject": s.id, "protected": s is protected, "t": t}
            row |= guided_projection(tuned_parts, s, t, trigger) | branch_drift(probe_parts, tuned_parts, s, t, trigger)
            print(json.dumps(row), flush=True)
        images = verifier._run_generate(tuned, [trigger] * args.n_images, verifier.seed)
        scores = pattern_scores(images, pattern)
        out = {
            "when": "attacked",
            "subject": s.id,
            "protected": s is protected,
            "pattern_rate": round(float((scores >= DEFAULT_THRESHOLD).mean()), 3),
            "identity_similarity": round(verifier.similarity(images, case), 3),
            "seconds": round(time.time() - t0, 1),
        }
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
