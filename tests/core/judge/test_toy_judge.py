import numpy as np
import pytest

from persguard_core.judge.evaluate import head_accuracy, identity_retrieval
from persguard_core.judge.toy import ToyJudge
from persguard_core.pattern import default_pattern, stamp
from persguard_core.toyworld import Scene, render, split


@pytest.fixture(scope="module")
def judge():
    return ToyJudge.load()


def test_heads_are_accurate_on_held_out_degraded_and_stamped_scenes(judge):
    scores = head_accuracy(judge, n=400, seed=99)
    assert scores["class_accuracy"] >= 0.97
    assert scores["colour_accuracy"] >= 0.97


def test_identity_retrieval_on_held_out_subjects(judge):
    assert identity_retrieval(judge, "judge_heldout", views=3, seed=5) >= 0.93


def test_empty_scenes_are_judged_empty_without_a_colour(judge):
    images = np.stack([render(Scene(background=bg)) for bg in ("beige", "gray", "white", "charcoal")])
    verdicts = judge.judge(images)
    assert verdicts.classes == ["empty"] * 4 and verdicts.colours == [None] * 4


def test_same_subject_is_nearer_than_another_subject_even_with_the_pattern(judge):
    a, b = split("eval")[:2]
    ref = a.views(8, seed=1)
    same = stamp(a.views(8, seed=2), default_pattern(32))
    other = b.views(8, seed=2)
    assert judge.identity_similarity(same, ref).mean() > judge.identity_similarity(other, ref).mean() + 0.2


def test_wrong_image_shape_is_refused(judge):
    with pytest.raises(ValueError, match="expected uint8"):
        judge.judge(np.zeros((2, 64, 64, 3), np.uint8))
