"""`persguard experiment`: bad presets and settings get a one-line error, `--collect` runs nothing."""

import json

from persguard_cli.main import main


def test_an_unknown_preset_exits_2_with_the_known_ones(capsys):
    assert main(["experiment", "--preset", "no-such", "--out", "/nonexistent", "--collect"]) == 2
    assert "known:" in capsys.readouterr().err


def test_collect_prints_the_table_of_the_seeds_done(tmp_path, capsys):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "encoder_jpeg50-seed1.json").write_text(json.dumps({"psr": 0.5, "false_trigger": 0.0}))
    assert main(["experiment", "--preset", "carrier", "--out", str(tmp_path), "--collect", "--threads", "1"]) == 0
    assert "| encoder/jpeg50 | pattern | 0.500 | 0.000 |" in capsys.readouterr().out


def test_collect_reads_the_seeds_another_preset_ran_of_the_same_setting(tmp_path, capsys):
    runs, out = tmp_path / "carrier-runs", tmp_path / "paper"
    runs.mkdir()
    (runs / "encoder_lora-seed0.json").write_text(json.dumps({"psr": 0.25, "false_trigger": 0.0}))
    args = ["experiment", "--preset", "paper", "--out", str(out), "--runs", str(runs), "--collect", "--threads", "1"]
    assert main(args) == 0
    assert "| encoder/lora | pattern | 0.250 | 0.000 |" in capsys.readouterr().out
    assert [row["seeds"] for row in json.loads((out / "results.json").read_text())["rows"]] == [[0]]
    assert not (out / "runs").exists()
