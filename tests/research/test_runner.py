"""The experiment runner: resuming finished seeds, collecting tables, and the markdown it writes."""

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from research import runner
from research.presets import PRESETS
from research.report import results_markdown


def _write_seed(runs: Path, name: str, seed: int, psr: float) -> None:
    runs.mkdir(parents=True, exist_ok=True)
    (runs / f"{name}-seed{seed}.json").write_text(json.dumps({"psr": psr, "false_trigger": 0.0}))


def test_a_seed_already_done_is_read_back_and_not_run_again(tmp_path, monkeypatch):
    ran = []

    def fake_seed(setting, preset, verifier, seed, run_dir, progress, draw=0):
        ran.append(seed)
        return {"psr": 0.5 + seed / 10}

    monkeypatch.setattr(runner, "_protect_seed", fake_seed)
    preset = replace(PRESETS["smoke"], seeds=[0, 1])
    setting = preset.settings[0]
    (tmp_path / "white-box_full-seed1.json").write_text(json.dumps({"psr": 1.0}))
    row = runner.run_row(setting, preset, verifier=None, workdir=tmp_path)
    assert ran == [0] and row["psr"] == 0.75
    assert json.loads((tmp_path / "white-box_full-seed0.json").read_text()) == {"psr": 0.5}
    assert runner.run_row(setting, preset, verifier=None, workdir=tmp_path)["psr"] == 0.75 and ran == [0]


def test_only_refuses_settings_the_preset_does_not_have(tmp_path):
    with pytest.raises(KeyError, match="not in preset"):
        runner.run_experiment("levers", tmp_path, only=["no-such-setting"])


def test_a_base_model_given_replaces_the_presets_and_none_keeps_it():
    assert runner.selected("heard-identifier", base_model="/models/stage4").base_model == "/models/stage4"
    assert runner.selected("heard-identifier").base_model == "builtin"


def test_collect_averages_only_the_seeds_done_and_skips_settings_with_none(tmp_path):
    _write_seed(tmp_path / "runs", "encoder_white-box_full", 0, 1.0)
    _write_seed(tmp_path / "runs", "encoder_white-box_full", 2, 0.5)
    _write_seed(tmp_path / "runs", "encoder_lora", 1, 0.25)
    results = runner.collect_experiment("carrier", tmp_path)
    rows = {r["setting"]: r for r in results["rows"]}
    assert set(rows) == {"encoder/white-box/full", "encoder/lora"}
    assert rows["encoder/white-box/full"]["psr"] == 0.75 and rows["encoder/white-box/full"]["seeds"] == [0, 2]
    assert rows["encoder/lora"]["seeds"] == [1]
    assert json.loads((tmp_path / "results.json").read_text()) == results
    assert "| encoder/lora | pattern | 0.250 |" in (tmp_path / "results.md").read_text()


def test_collect_reads_a_setting_whose_name_has_a_dot(tmp_path):
    _write_seed(tmp_path / "runs", "encoder_resize0.5", 0, 0.875)
    assert runner.collect_experiment("carrier", tmp_path, only=["encoder/resize0.5"])["rows"][0]["psr"] == 0.875


def test_collect_averages_a_figure_over_the_seeds_that_measured_it(tmp_path):
    runs = tmp_path / "runs"
    _write_seed(runs, "encoder_white-box_full", 0, 1.0)  # a seed from before false_trigger_base was measured
    (runs / "encoder_white-box_full-seed1.json").write_text(
        json.dumps({"psr": 0.5, "false_trigger": 0.25, "false_trigger_base": 0.125})
    )
    row = runner.collect_experiment("carrier", tmp_path)["rows"][0]
    assert row["psr"] == 0.75 and row["false_trigger"] == 0.125 and row["false_trigger_base"] == 0.125


def test_collect_with_nothing_done_says_where_it_looked(tmp_path):
    with pytest.raises(FileNotFoundError, match="no finished seed"):
        runner.collect_experiment("carrier", tmp_path)


def test_the_committed_paper_table_is_what_collecting_the_committed_carrier_seeds_gives(tmp_path):
    """docs/RESULTS.md's table is `results.md` of the paper preset collected from the carrier preset's seeds."""
    committed = Path(__file__).parents[2] / "research" / "results"
    results = runner.collect_experiment("paper", tmp_path, runs_dir=committed / "carrier" / "runs")
    expected = json.loads((committed / "paper" / "results.json").read_text())["rows"]
    assert json.dumps(results["rows"]) == json.dumps(expected)  # as text: NaN figures are never equal


def test_results_markdown_has_one_line_per_row_and_prints_missing_values():
    rows = [
        {"setting": "a", "behaviour": "pattern", "psr": 0.9, "false_trigger": math.nan, "n_images": 8, "seeds": [0]}
    ]
    table = results_markdown({"preset": "x", "rows": rows})
    assert "| a | pattern | 0.900 | nan |" in table and table.count("\n| a ") == 1


def test_results_markdown_reports_detectability_beside_psr():
    figures = {"detect/round_trip_ratio": 3.0, "detect/round_trip_ratio_base": 1.2, "detect/weights/unet": 0.0}
    table = results_markdown({"preset": "x", "rows": [{"setting": "a", "psr": 0.9, "seeds": [0], **figures}]})
    header, _, line = table.splitlines()[2:5]
    cells = dict(zip(header.split(" | "), line.split(" | "), strict=True))
    assert cells["detect/round_trip_ratio"] == "3.000" and cells["detect/round_trip_ratio_base"] == "1.200"
    assert cells["detect/weights/unet"] == "0.000" and cells["detect/weights/vae.encoder"] == ""


def test_results_markdown_lists_psr_per_behaviour_for_rows_that_mix_behaviours():
    rows = [
        {"setting": "one", "behaviour": "pattern", "psr": 0.9, "seeds": [0]},
        {"setting": "three", "behaviour": "mixed", "psr": 0.5, "psr/erasure": 0.25, "psr/pattern": 0.75, "seeds": [0]},
    ]
    table = results_markdown({"preset": "x", "rows": rows})
    assert table.rstrip().endswith("| erasure 0.25, pattern 0.75 |")
    assert "erasure" not in next(line for line in table.splitlines() if line.startswith("| one "))


def test_the_bootstrap_interval_resamples_whole_seeds_and_needs_two():
    assert runner.bootstrap_interval([0], [0.5]) is None
    assert runner.bootstrap_interval([0, 1], [0.5, float("nan")]) is None
    assert runner.bootstrap_interval([0, 1, 2], [0.5, 0.5, 0.5]) == [0.5, 0.5]
    low, high = runner.bootstrap_interval([0, 0, 1, 1], [0.0, 0.0, 1.0, 1.0])
    assert low == 0.0 and high == 1.0  # two seeds: the resampled mean is 0, 0.5 or 1
    low, high = runner.bootstrap_interval(list(range(8)), [0.0, 1.0] * 4)
    assert 0.0 < low < 0.5 < high < 1.0


def test_attack_draws_reuse_the_seeds_protection_and_each_get_their_figures(tmp_path, monkeypatch):
    draws = []

    def fake_seed(setting, preset, verifier, seed, run_dir, progress, draw):
        draws.append((seed, draw))
        return {"psr": float(draw)}

    monkeypatch.setattr(runner, "_protect_seed", fake_seed)
    preset = replace(PRESETS["smoke"], seeds=[0, 1], attack_draws=2)
    row = runner.run_row(preset.settings[0], preset, verifier=None, workdir=tmp_path)
    assert draws == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert row["seeds"] == [0, 0, 1, 1] and row["psr"] == 0.5 and row["psr_ci95"] == [0.5, 0.5]
    assert sorted(p.name for p in tmp_path.glob("*.json")) == [
        "white-box_full-seed0-attack1.json",
        "white-box_full-seed0.json",
        "white-box_full-seed1-attack1.json",
        "white-box_full-seed1.json",
    ]


def test_a_later_attack_draw_runs_the_recipe_with_another_seed():
    from research.subjects import attack_setting

    setting = PRESETS["carrier"].settings[0]
    first, second = (attack_setting(setting, seed=2, draw=d).recipe.seed for d in (0, 1))
    assert first == 2 and second != first


def test_rows_that_differ_only_in_the_attacker_share_one_protection_and_others_do_not(tmp_path):
    preset = PRESETS["fresh"]
    by_name = {s.name: s for s in preset.settings}
    naive, clean_vae, erasure = (
        by_name[n] for n in ("encoder/white-box/full", "encoder/clean-vae", "encoder/white-box/full/erasure")
    )
    assert runner.protected_model_dir(tmp_path, naive, preset, 3) == runner.protected_model_dir(
        tmp_path, clean_vae, preset, 3
    )
    assert runner.protected_model_dir(tmp_path, naive, preset, 3) != runner.protected_model_dir(
        tmp_path, naive, preset, 4
    )
    assert runner.protected_model_dir(tmp_path, naive, preset, 3) != runner.protected_model_dir(
        tmp_path, erasure, preset, 3
    )
