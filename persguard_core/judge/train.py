"""Train the toy-world judge and save it next to the library.

    python -m persguard_core.judge.train --out persguard_core/assets/judge

Each step mixes generic scenes (class and colour labels; 15% empty) with views of `judge_train` subjects
(identity labels for a cosine-softmax head). Images are degraded (blur, noise, jitter) and a third carry the
default pattern, so the heads hold on generated and stamped images alike.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from persguard_core.diffusion import images_to_pixels
from persguard_core.judge.augment import degrade, random_pattern_stamps
from persguard_core.judge.evaluate import evaluate_judge
from persguard_core.judge.toy import JUDGE_CLASSES, JudgeNet, ToyJudge
from persguard_core.toyworld import COLOUR_NAMES, SPLITS, captioned_batch, subject

log = logging.getLogger(__name__)


def _labelled_batch(
    rng: np.random.Generator, n_generic: int, n_subjects: int, views: int
) -> tuple[np.ndarray, torch.Tensor, torch.Tensor, torch.Tensor]:
    images, _, scenes = captioned_batch(rng, n_generic, p_empty=0.15)
    ids = rng.choice(list(SPLITS["judge_train"]), size=n_subjects, replace=False)
    subs = [subject(int(i)) for i in ids]
    sub_images = np.concatenate([s.views(views, seed=int(rng.integers(2**31))) for s in subs])
    apps = [s.appearance for s in scenes] + [s.appearance for s in subs for _ in range(views)]
    classes = [JUDGE_CLASSES.index(a.shape) if a else len(JUDGE_CLASSES) - 1 for a in apps]
    colours = [COLOUR_NAMES.index(a.colour) if a else -100 for a in apps]  # -100: ignored for empty scenes
    identity = np.repeat(ids - SPLITS["judge_train"].start, views)
    return np.concatenate([images, sub_images]), torch.tensor(classes), torch.tensor(colours), torch.tensor(identity)


def train_judge(steps: int, seed: int, lr: float = 2e-3) -> ToyJudge:
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    net = JudgeNet()
    n_ids = len(SPLITS["judge_train"])
    prototypes = torch.nn.Parameter(torch.randn(n_ids, net.embed_head[-1].out_features) * 0.01)
    params = [*net.parameters(), prototypes]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    start = time.time()
    for step in range(steps):
        images, classes, colours, identity = _labelled_batch(rng, n_generic=96, n_subjects=24, views=3)
        x = degrade(images_to_pixels(random_pattern_stamps(images, rng, share=0.33)), rng)
        class_logits, colour_logits, emb = net(x)
        id_logits = 16.0 * emb[-len(identity) :] @ F.normalize(prototypes, dim=1).T  # cosine softmax, scale 16
        loss = (
            F.cross_entropy(class_logits, classes)
            + F.cross_entropy(colour_logits, colours, ignore_index=-100)
            + F.cross_entropy(id_logits, identity)
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 200 == 0 or step == steps - 1:
            log.info("judge step=%d loss=%.3f elapsed=%.0fs", step, loss.item(), time.time() - start)
    return ToyJudge(net.eval())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    start = time.time()
    judge = train_judge(args.steps, args.seed)
    seconds = time.time() - start
    metrics = evaluate_judge(judge, seed=10_000 + args.seed)
    judge.save(args.out, extra={"training": {**vars(args), "out": str(args.out), "seconds": round(seconds, 1)}})
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    log.info("judge saved to %s after %.0fs: %s", args.out, seconds, metrics)


if __name__ == "__main__":
    main()
