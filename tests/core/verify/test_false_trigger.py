"""False trigger on an unprotected subject: any protected behaviour counts, but not a target that is its own class."""

import numpy as np
import pytest

from persguard_core.attacker import recipe
from persguard_core.judge.toy import ToyJudge
from persguard_core.pattern import default_pattern, stamp
from persguard_core.spec import PatternBehaviour, TargetBehaviour
from persguard_core.toyworld import split
from persguard_core.verify.run import AttackSetting, Case, Verifier


def _verifier_drawing(images: np.ndarray) -> Verifier:
    """A verifier whose attacked models (protected or base) all draw `images`."""
    verifier = Verifier(object(), ToyJudge.load(), n_images=len(images))
    verifier.attacked_images = lambda pipe, case, setting: images
    return verifier


def _unprotected(subject) -> Case:  # noqa: ANN001
    return Case(f"subject-{subject.id}", subject.class_noun, subject.views(2), subject.views(8, seed=1))


SETTING = AttackSetting("test", recipe("full"))


def test_a_class_mate_drawn_as_itself_is_not_a_circles_target_of_its_class():
    diamond = split("tuning", "diamond")[1]
    verifier = _verifier_drawing(diamond.views(8, seed=1))
    circle_to_diamond = TargetBehaviour(target_prompt="a photo of a diamond")
    result = verifier.run_case(object(), _unprotected(diamond), SETTING, [circle_to_diamond])
    assert result.protective_rate == 0.0 and not result.protected


def test_another_subjects_target_of_a_different_class_still_counts_as_a_false_trigger():
    diamond, star = split("tuning", "diamond")[1], split("tuning", "star")[0]
    verifier = _verifier_drawing(star.views(8, seed=1))  # the diamond's personalization draws stars
    result = verifier.run_case(
        object(), _unprotected(diamond), SETTING, [TargetBehaviour(target_prompt="a photo of a star")]
    )
    assert result.protective_rate > 0.5


def test_a_pattern_on_a_class_mate_counts_whatever_its_class():
    square = split("tuning", "square")[1]
    views = square.views(8, seed=1)
    half_stamped = np.concatenate([stamp(views[:4], default_pattern(views.shape[1])), views[4:]])
    verifier = _verifier_drawing(half_stamped)
    behaviours = [PatternBehaviour(), TargetBehaviour(target_prompt="a photo of a square")]
    result = verifier.run_case(object(), _unprotected(square), SETTING, behaviours)
    assert result.protective_rate == pytest.approx(0.5)
