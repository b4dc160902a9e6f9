import json

import numpy as np
import pytest

from persguard_core.spec import TargetBehaviour
from persguard_core.verify.protective import target_class
from persguard_core.verify.report import loss_svg, write_report
from persguard_core.verify.run import CaseResult, VerificationResult


def _result() -> VerificationResult:
    samples = np.zeros((4, 32, 32, 3), np.uint8)
    return VerificationResult(
        setting="white-box/full",
        cases=[
            CaseResult("p1", True, 1.0, 0.2, samples=samples),
            CaseResult("p2", True, 0.5, 0.4),
            CaseResult("u1", False, 0.0, 0.9, similarity_base=0.9, samples=samples),
            CaseResult("u2", False, 0.25, 0.6, similarity_base=0.8),
        ],
        utility={"utility_drop": 0.01, "no_identifier_protective_rate": 0.0},
        pre_attack={"pre_attack_leakage_ratio": 1.05},
        n_images=16,
    )


def test_summary_separates_protected_from_unprotected_cases():
    s = _result().summary()
    assert s["psr"] == pytest.approx(0.75)
    assert s["leakage"] == pytest.approx(0.3)
    assert s["false_trigger"] == pytest.approx(0.125)
    assert s["benign_fidelity"] == pytest.approx((1.0 + (1.6 / 1.8)) / 2)  # (1 + cos) / 2 scale
    assert s["utility_drop"] == 0.01 and s["pre_attack_leakage_ratio"] == 1.05


def test_benign_fidelity_is_also_reported_as_the_raw_similarity_ratio():
    assert _result().summary()["benign_fidelity_raw"] == pytest.approx((0.9 / 0.9 + 0.6 / 0.8) / 2)


def test_psr_over_the_attacks_that_learned_the_subject_leaves_out_the_ones_that_did_not():
    result = _result()
    result.cases[0].similarity_untuned = 0.05  # 0.2 >= 0.05 + margin: learned, rate 1.0
    result.cases[1].similarity_untuned = 0.35  # 0.4 < 0.35 + margin: not learned, rate 0.5
    s = result.summary()
    assert s["psr"] == pytest.approx(0.75) and s["psr_learned"] == 1.0 and s["learned_share"] == 0.5
    result.cases[0].behaviour = "erasure"  # a working erasure shows no subject: not counted either way
    assert result.summary()["learned_share"] == 0.0


def test_summary_has_psr_per_behaviour_only_when_the_protected_subjects_mix_behaviours():
    assert not any(k.startswith("psr/") for k in _result().summary())  # no behaviour kinds given
    mixed = _result()
    mixed.cases += [CaseResult("p3", True, 0.25, 0.1, behaviour="erasure")]
    mixed.cases[0].behaviour = mixed.cases[1].behaviour = "pattern"
    s = mixed.summary()
    assert s["psr/pattern"] == pytest.approx(0.75) and s["psr/erasure"] == pytest.approx(0.25)
    assert s["psr"] == pytest.approx(1.75 / 3) and "psr/target" not in s


def test_report_writes_json_and_a_self_contained_html_page(tmp_path):
    history = [{"bb": 1.0 / (i + 1), "pp": 0.01} for i in range(30)]
    json_path, html_path = write_report(
        _result(), tmp_path, history, grids={"base vs protected": np.zeros((2, 32, 32, 3), np.uint8)}
    )
    data = json.loads(json_path.read_text())
    assert data["summary"]["psr"] == pytest.approx(0.75) and len(data["cases"]) == 4
    page = html_path.read_text()
    assert page.count("data:image/png;base64,") == 3  # two case grids with samples + one named grid
    assert "<svg" in page and "polyline" in page and "http" not in page.replace("http://www.w3.org/2000/svg", "")


def test_loss_plot_has_one_line_per_term():
    svg = loss_svg([{"a": 1.0, "b": 2.0}, {"a": 0.5, "b": 1.0}])
    assert svg.count("<polyline") == 2


def test_target_class_is_read_from_the_target_prompt():
    classes = ("circle", "star", "empty")
    assert target_class(TargetBehaviour(target_prompt="a photo of a star"), classes) == "star"
    with pytest.raises(ValueError, match="names none"):
        target_class(TargetBehaviour(target_prompt="a photo of a rabbit"), classes)
