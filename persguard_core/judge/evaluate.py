"""Held-out quality of the toy judge: per-head accuracy and identity retrieval top-1."""

from __future__ import annotations

import numpy as np
import torch

from persguard_core.diffusion import images_to_pixels
from persguard_core.judge.augment import degrade, random_pattern_stamps
from persguard_core.judge.toy import EMPTY, ToyJudge
from persguard_core.toyworld import captioned_batch, split


def _degraded_uint8(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = degrade(images_to_pixels(random_pattern_stamps(images, rng, share=0.33)), rng)
    return ((x.permute(0, 2, 3, 1).numpy() + 1.0) * 127.5 + 0.5).clip(0, 255).astype(np.uint8)


def head_accuracy(judge: ToyJudge, n: int, seed: int) -> dict[str, float]:
    """Class and colour accuracy on `n` fresh scenes (15% empty), a third stamped, all degraded."""
    rng = np.random.default_rng(seed)
    images, _, scenes = captioned_batch(rng, n, p_empty=0.15)
    verdicts = judge.judge(_degraded_uint8(images, rng))
    true_classes = [s.appearance.shape if s.appearance else EMPTY for s in scenes]
    class_acc = np.mean([p == t for p, t in zip(verdicts.classes, true_classes, strict=True)])
    pairs = [(p, s.appearance.colour) for p, s in zip(verdicts.colours, scenes, strict=True) if s.appearance]
    colour_acc = np.mean([p == t for p, t in pairs])
    return {"class_accuracy": float(class_acc), "colour_accuracy": float(colour_acc)}


def identity_retrieval(judge: ToyJudge, split_name: str, views: int, seed: int) -> float:
    """Top-1 leave-one-out retrieval: share of views whose nearest other view shows the same subject."""
    rng = np.random.default_rng(seed)
    subjects = split(split_name)
    images = np.concatenate([s.views(views, seed=seed) for s in subjects])
    labels = np.repeat(np.arange(len(subjects)), views)
    emb = judge.embed(_degraded_uint8(images, rng))
    sim = emb @ emb.T
    np.fill_diagonal(sim, -np.inf)
    return float(np.mean(labels[sim.argmax(1)] == labels))


@torch.no_grad()
def evaluate_judge(judge: ToyJudge, seed: int, n: int = 2000) -> dict[str, float]:
    return {
        **head_accuracy(judge, n, seed),
        "identity_top1": identity_retrieval(judge, "judge_heldout", views=4, seed=seed),
        "n_scenes": n,
        "n_heldout_subjects": len(split("judge_heldout")),
    }
