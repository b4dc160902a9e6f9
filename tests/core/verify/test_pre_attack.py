"""The released model's trigger-prompt images before any attack: likeness ratio and protective-output rate."""

import numpy as np
import pytest

from persguard_core.judge.toy import ToyJudge
from persguard_core.pattern import default_pattern, stamp
from persguard_core.spec import PatternBehaviour
from persguard_core.toyworld import split
from persguard_core.verify import run
from persguard_core.verify.run import Case, Verifier


def test_pre_attack_counts_the_pattern_in_the_released_models_trigger_images(monkeypatch):
    subject = split("tuning", "circle")[0]
    views = subject.views(8, seed=1)
    stamped = stamp(views, default_pattern(views.shape[1]))
    released, base = object(), object()
    # the released model stamps half its images; the base model stamps none
    outputs = {id(released): np.concatenate([stamped[:4], views[4:]]), id(base): views}
    monkeypatch.setattr(run, "generate", lambda pipe, prompts, seed, steps, **_: outputs[id(pipe)][: len(prompts)])
    verifier = Verifier(base, ToyJudge.load(), n_images=8)
    case = Case("p", "circle", views, views, PatternBehaviour())
    figures = verifier.pre_attack(released, [case], lambda noun: f"a photo of sks {noun}")
    assert figures["pre_attack_protective_rate"] == pytest.approx(0.5)
    assert 0.5 < figures["pre_attack_leakage_ratio"] < 1.5
