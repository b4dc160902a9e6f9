"""The core's smoke test: protect a subject of the built-in model, attack, and compare with an unprotected one."""

import json

import pytest

from persguard_core.experiment import run_experiment


@pytest.mark.slow
def test_pattern_shows_clearly_more_often_for_the_protected_subject_than_for_an_unprotected_one(tmp_path):
    """The smoke preset protects with the encoder carrier (docs/RESEARCH.md, run 26): the UNet carrier does not
    survive the attack on the built-in model yet."""
    results = run_experiment("smoke", tmp_path)
    row = results["rows"][0]
    assert row["psr"] >= row["false_trigger"] + 0.3, row
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["rows"][0]["setting"] == "white-box/full" and (tmp_path / "results.md").exists()
