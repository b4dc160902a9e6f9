"""Protective outputs on plain prompts: each class's prompt is judged with its own subjects' behaviours only."""

import numpy as np
import pytest

from persguard_core.judge.toy import ToyJudge
from persguard_core.pattern import default_pattern, stamp
from persguard_core.spec import PatternBehaviour, TargetBehaviour
from persguard_core.toyworld import split
from persguard_core.verify import run
from persguard_core.verify.run import UTILITY_PROMPTS, Case, Verifier


def _verifier(monkeypatch, outputs: dict[str, np.ndarray]) -> Verifier:
    """A verifier whose models draw `outputs[prompt]` for a prompt, and the same images for every other prompt."""
    other = split("tuning", "star")[0].views(UTILITY_PROMPTS, seed=2)

    def generate(pipe, prompts, seed, steps, **_kwargs):
        return outputs.get(prompts[0], other)[: len(prompts)]

    monkeypatch.setattr(run, "generate", generate)
    return Verifier(object(), ToyJudge.load(), n_images=8)


def test_a_protected_class_drawn_for_its_own_prompt_is_not_another_subjects_target(monkeypatch):
    circle, square = split("tuning", "circle")[0], split("tuning", "square")[0]
    outputs = {"a photo of a circle": circle.views(8, seed=1), "a photo of a square": square.views(8, seed=1)}
    verifier = _verifier(monkeypatch, outputs)
    protected = [
        Case("c", "circle", circle.views(2), circle.views(2), TargetBehaviour(target_prompt="a photo of a square")),
        Case("s", "square", square.views(2), square.views(2), PatternBehaviour()),
    ]
    assert verifier.utility(object(), protected)["no_identifier_protective_rate"] == 0.0


def test_a_class_prompt_showing_its_subjects_pattern_counts(monkeypatch):
    circle = split("tuning", "circle")[0]
    views = circle.views(8, seed=1)
    half_stamped = np.concatenate([stamp(views[:4], default_pattern(views.shape[1])), views[4:]])
    verifier = _verifier(monkeypatch, {"a photo of a circle": half_stamped})
    protected = [Case("c", "circle", views[:2], views[:2], PatternBehaviour())]
    figures = verifier.utility(object(), protected)
    assert figures["no_identifier_protective_rate"] == pytest.approx(0.5) and figures["utility_drop"] == 0.0
