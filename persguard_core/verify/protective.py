"""Is the protective output there? One judgement per generated image, per behaviour (METHOD.md, PSR)."""

from __future__ import annotations

import numpy as np

from persguard_core.judge.pattern_detector import detect_pattern
from persguard_core.judge.toy import EMPTY, JUDGE_CLASSES, ToyJudge
from persguard_core.pattern import PatternPlacement, load_pattern
from persguard_core.spec import Behaviour, ErasureBehaviour, PatternBehaviour, TargetBehaviour


def target_class(behaviour: TargetBehaviour, known_classes: tuple[str, ...]) -> str:
    """The judge class named in a target prompt ("a photo of a star" -> "star")."""
    words = (behaviour.target_prompt or "").replace(",", " ").split()
    named = [w for w in words if w in known_classes]
    if not named:
        raise ValueError(f"target prompt {behaviour.target_prompt!r} names none of the judge's classes {known_classes}")
    return named[-1]


def protective_output(images: np.ndarray, behaviour: Behaviour, judge: ToyJudge) -> np.ndarray:
    """(N,) bool: pattern detected / subject absent (judged empty) / target class present."""
    if isinstance(behaviour, PatternBehaviour):
        pattern = load_pattern(behaviour.pattern_image, images.shape[1])
        return detect_pattern(images, pattern, PatternPlacement(behaviour.position, behaviour.opacity))
    verdicts = judge.judge(images)
    if isinstance(behaviour, ErasureBehaviour):
        return np.array([c == EMPTY for c in verdicts.classes])
    wanted = target_class(behaviour, JUDGE_CLASSES)
    return np.array([c == wanted for c in verdicts.classes])
