"""The judge's verdict on each generated image of a case: it agrees with the case's figures (the mean of its flags is
the protective rate, per kind too), it says which images are the case's samples, and the report carries it."""

import json

import numpy as np
import pytest

from persguard_core.attacker import recipe
from persguard_core.judge.toy import ToyJudge
from persguard_core.pattern import default_pattern, stamp
from persguard_core.spec import ErasureBehaviour, PatternBehaviour, TargetBehaviour
from persguard_core.toyworld import split
from persguard_core.verify.report import GRID_COLUMNS, write_report
from persguard_core.verify.run import SAMPLES, AttackSetting, Case, CaseResult, VerificationResult, Verifier
from persguard_core.verify.verdicts import verdict_label

SETTING = AttackSetting("test", recipe("full"))


def _verifier_drawing(images: np.ndarray) -> Verifier:
    """A verifier whose attacked models (protected and base) draw `images`."""
    verifier = Verifier(object(), ToyJudge.load(), n_images=len(images))
    verifier.attacked_images = lambda pipe, case, setting: images
    verifier.untuned_similarity = lambda case, prompt: 0.0
    return verifier


def _drawn() -> np.ndarray:
    """12 images: 5 stars with the pattern, 4 plain stars, 3 empty scenes."""
    stars = split("tuning", "star")[0].views(9, seed=1)
    empty = np.full((3, *stars.shape[1:]), 255, np.uint8)
    return np.concatenate([stamp(stars[:5], default_pattern(stars.shape[1])), stars[5:], empty])


def _case(name: str, class_noun: str, behaviour=None) -> Case:
    subject = split("tuning", class_noun)[1]
    return Case(name, class_noun, subject.views(2), subject.views(8, seed=1), behaviour)


def _check_agrees(result: CaseResult, n_images: int) -> None:
    flags = [v.protective for v in result.verdicts]
    assert len(flags) == n_images
    assert np.mean(flags) == pytest.approx(result.protective_rate)
    similarities = [v.similarity for v in result.verdicts]
    assert np.mean(similarities) == pytest.approx(result.similarity)
    assert [v.sample for v in result.verdicts] == [i if i < SAMPLES else None for i in range(n_images)]
    assert len(result.samples) == min(SAMPLES, n_images)


@pytest.mark.parametrize(
    ("behaviour", "kind"),
    [
        (PatternBehaviour(), "pattern"),
        (TargetBehaviour(target_prompt="a photo of a star"), "target"),
        (ErasureBehaviour(), "erasure"),
    ],
)
def test_a_protected_cases_verdicts_are_its_own_behaviours_and_average_to_its_psr(behaviour, kind) -> None:
    drawn = _drawn()
    result = _verifier_drawing(drawn).run_case(object(), _case("p", "circle", behaviour), SETTING, [behaviour])
    _check_agrees(result, len(drawn))
    assert 0.0 < result.protective_rate < 1.0, "some images judged each way"
    assert all(v.kinds == ((kind,) if v.protective else ()) for v in result.verdicts)


def test_an_unprotected_cases_verdicts_are_false_triggers_of_any_kind_and_average_to_its_rates() -> None:
    drawn = _drawn()
    behaviours = [PatternBehaviour(), TargetBehaviour(target_prompt="a photo of a star"), ErasureBehaviour()]
    result = _verifier_drawing(drawn).run_case(object(), _case("u", "diamond"), SETTING, behaviours)
    _check_agrees(result, len(drawn))
    assert set(result.by_kind) == {"pattern", "target", "erasure"}
    for kind, rate in result.by_kind.items():
        assert np.mean([kind in v.kinds for v in result.verdicts]) == pytest.approx(rate), kind
    assert all(v.protective == bool(v.kinds) for v in result.verdicts)
    assert result.verdicts[0].kinds[0] == "pattern" and "pattern" not in result.verdicts[6].kinds


def test_a_target_of_the_cases_own_class_is_no_false_trigger_on_any_image() -> None:
    stars = split("tuning", "star")[1].views(4, seed=1)
    behaviours = [TargetBehaviour(target_prompt="a photo of a star")]
    result = _verifier_drawing(stars).run_case(object(), _case("u", "star"), SETTING, behaviours)
    assert result.protective_rate == 0.0 and [v.protective for v in result.verdicts] == [False] * 4
    assert [v.sample for v in result.verdicts] == [0, 1, 2, 3]


def test_the_report_carries_each_images_verdict_in_json_and_words(tmp_path) -> None:
    drawn = _drawn()
    case = _verifier_drawing(drawn).run_case(object(), _case("p", "circle", PatternBehaviour()), SETTING, [])
    result = VerificationResult("test", [case], {}, {}, n_images=len(drawn))
    json_path, html_path = write_report(result, tmp_path)
    data = json.loads(json_path.read_text())
    assert data["grid_columns"] == GRID_COLUMNS
    verdicts = data["cases"][0]["verdicts"]
    assert [v["protective"] for v in verdicts] == [v.protective for v in case.verdicts]
    assert verdicts[0]["kinds"] == ["pattern"] and verdicts[-1]["sample"] is None
    page = html_path.read_text()
    assert page.count("<li>") == SAMPLES and "1: pattern found, similarity" in page and "6: no pattern" in page
    assert f"Judge: 5 of {len(drawn)} generated images show the protective output." in page


def test_verdicts_in_words() -> None:
    assert verdict_label(True, "pattern", True) == "pattern found"
    assert verdict_label(True, "erasure", False) == "subject not erased"
    assert verdict_label(True, "target", True) == "target drawn"
    assert verdict_label(True, None, False) == "no protective output"
    assert verdict_label(False, None, True, ["pattern", "target"]) == "false trigger (pattern, target)"
    assert verdict_label(False, "pattern", False) == "no false trigger"
