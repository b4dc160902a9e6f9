"""Can a model-level carrier reach the attacker through prior preservation? Under `clean-vae` the attacker's
training targets are its own photos through the public VAE, except one part the released UNet makes: DreamBooth's
prior-preservation images, sampled from the released model for the class prompt. This probe is the upper bound of
a carrier that works that way: it attacks the *base* model with the full recipe, but replaces `--poisoned` of the
50 class images by stamped views of the protected subject (views the attacker never holds), as if the released
model drew the protected subject with the pattern that often when asked for its class. It counts the pattern in
the instance prompt's generations of the protected subject and, with `--unprotected`, of its class-mate attacked
with the same poisoned prior (the false trigger). The cost on everyone is the release's by construction: that share of
its class samples is the protected subject wearing the pattern.

    .venv/bin/python research/probes/poisoned_prior.py --seed 0 --poisoned 25
    .venv/bin/python research/probes/poisoned_prior.py --seed 0 --poisoned 25 --unprotected
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from diffusers import StableDiffusionPipeline

from persguard_core.attacker.recipe import AttackRecipe
from persguard_core.judge.pattern_detector import DEFAULT_THRESHOLD, pattern_scores
from persguard_core.judge.toy import ToyJudge
from persguard_core.model_io import load_pipeline
from persguard_core.pattern import default_pattern, stamp
from persguard_core.verify.run import Case, Verifier
from research.setting import Setting
from research.subjects import attack_setting, subjects_for_seed


class PoisonedPriorVerifier(Verifier):
    """A verifier whose DreamBooth prior images have their first `len(poison)` replaced by `poison`."""

    def __init__(self, *args: object, poison: np.ndarray, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.poison = poison

    def _class_images(self, pipe: StableDiffusionPipeline, class_noun: str, recipe: AttackRecipe) -> np.ndarray:
        images = super()._class_images(pipe, class_noun, recipe).copy()
        images[: len(self.poison)] = self.poison
        return images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", default="tuning")
    ap.add_argument("--poisoned", type=int, default=25, help="class images (of 50) replaced by the stamped subject")
    ap.add_argument("--unprotected", action="store_true", help="attack the seed's unprotected class-mate instead")
    ap.add_argument("--n-images", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    protected, unprotected, _ = subjects_for_seed(args.seed, args.split)
    subject = unprotected if args.unprotected else protected
    pattern = default_pattern(32)
    poison = stamp(protected.views(args.poisoned, seed=7), pattern)  # views no attacker photo shares
    base = load_pipeline("builtin")
    judge = ToyJudge.load()
    verifier = PoisonedPriorVerifier(base, judge, n_images=args.n_images, poison=poison)
    case = Case(f"subject-{subject.id}", subject.class_noun, subject.views(6, seed=0), subject.views(16, seed=1))
    setting = attack_setting(Setting("poisoned-prior"), args.seed)
    images = verifier.attacked_images(base, case, setting)
    rate = float((pattern_scores(images, pattern) >= DEFAULT_THRESHOLD).mean())
    out = {
        "args": vars(args),
        "subject": subject.id,
        "protected_subject": protected.id,
        "pattern_rate": round(rate, 3),
        "identity_similarity": round(verifier.similarity(images, case), 3),
        "seconds": round(time.time() - t0, 1),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
