"""The core's smoke test: protect a subject of the built-in model, attack, and compare with an unprotected one."""

import json

import pytest

from persguard_core.experiment import run_experiment


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="open research problem (docs/RESEARCH.md): the default objective does not yet survive the attack on the "
    "built-in model; strict, so this fails as soon as the method meets the target and the mark must go",
)
def test_pattern_shows_clearly_more_often_for_the_protected_subject_than_for_an_unprotected_one(tmp_path):
    results = run_experiment("smoke", tmp_path)
    row = results["rows"][0]
    assert row["psr"] >= row["false_trigger"] + 0.3, row
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["rows"][0]["setting"] == "white-box/full" and (tmp_path / "results.md").exists()
