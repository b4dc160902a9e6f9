"""False trigger on an unprotected subject: any protected behaviour counts, but not a target that is its own class;
and its reference, the same attack on the base model judged the same way."""

import numpy as np
import pytest

from persguard_core.attacker import recipe
from persguard_core.judge.toy import ToyJudge
from persguard_core.pattern import default_pattern, stamp
from persguard_core.spec import PatternBehaviour, TargetBehaviour
from persguard_core.toyworld import split
from persguard_core.verify.run import AttackSetting, Case, VerificationResult, Verifier


def _verifier_drawing(images: np.ndarray, base_images: np.ndarray | None = None) -> Verifier:
    """A verifier whose attacked protected model draws `images`, and its attacked base model `base_images`
    (`images` if not given)."""
    base = object()
    verifier = Verifier(base, ToyJudge.load(), n_images=len(images))
    drawn = images if base_images is None else base_images
    verifier.attacked_images = lambda pipe, case, setting: drawn if pipe is base else images
    verifier.untuned_similarity = lambda case, prompt: 0.0
    return verifier


def _unprotected(subject) -> Case:
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
    assert result.by_kind == {"pattern": pytest.approx(0.5)}  # the square's own class is no target here


def test_the_protective_rate_is_broken_down_by_behaviour_kind():
    diamond, star = split("tuning", "diamond")[1], split("tuning", "star")[0]
    stars = star.views(8, seed=1)
    drawn = np.concatenate([stamp(stars[:2], default_pattern(stars.shape[1])), stars[2:]])
    verifier = _verifier_drawing(drawn)
    behaviours = [PatternBehaviour(), TargetBehaviour(target_prompt="a photo of a star")]
    result = verifier.run_case(object(), _unprotected(diamond), SETTING, behaviours)
    assert result.by_kind["pattern"] == pytest.approx(0.25) and result.by_kind["target"] > 0.5
    assert result.by_kind_base == result.by_kind


def test_the_base_models_false_trigger_is_judged_with_the_same_behaviours_and_reported_beside_it():
    square = split("tuning", "square")[1]
    views = square.views(8, seed=1)
    quarter_stamped = np.concatenate([stamp(views[:2], default_pattern(views.shape[1])), views[2:]])
    verifier = _verifier_drawing(views, base_images=quarter_stamped)  # the protected model draws no pattern
    result = verifier.run_case(object(), _unprotected(square), SETTING, [PatternBehaviour()])
    assert result.protective_rate == 0.0 and result.protective_rate_base == pytest.approx(0.25)
    summary = VerificationResult("test", [result], {}, {}, n_images=8).summary()
    assert summary["false_trigger"] == 0.0 and summary["false_trigger_base"] == pytest.approx(0.25)


def test_a_protected_case_has_no_base_model_reference():
    square = split("tuning", "square")[1]
    verifier = _verifier_drawing(square.views(8, seed=1))
    case = Case("p", "square", square.views(2), square.views(8, seed=1), PatternBehaviour())
    result = verifier.run_case(object(), case, SETTING, [PatternBehaviour()])
    assert result.protected and result.protective_rate_base is None and result.similarity_base is None
