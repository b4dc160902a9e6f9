import math

from persguard_core.experiment import PRESETS, _subjects_for_seed, results_markdown


def test_ten_subjects_in_one_model_are_distinct_and_never_their_unprotected_class_mates():
    chosen = [_subjects_for_seed(i, "eval") for i in range(10)]
    protected = [p.id for p, _, _ in chosen]
    unprotected = {u.id for _, u, _ in chosen}
    assert len(set(protected)) == 10
    assert not set(protected) & unprotected
    for p, u, refs in chosen:
        assert p.class_noun == u.class_noun and all(r.class_noun == p.class_noun for r in refs)


def test_reported_and_tuning_subjects_never_overlap():
    tuning = {s.id for i in range(7) for s in _subjects_for_seed(i, "tuning")[:2]}
    reported = {s.id for i in range(7) for s in _subjects_for_seed(i, "eval")[:2]}
    assert not tuning & reported


def test_presets_name_the_required_rows():
    names = [s.name for s in PRESETS["paper"].settings]
    for required in (
        "gray-box/full",
        "black-box/full",
        "white-box/lora",
        "white-box/jpeg50",
        "white-box/mixed",
        "anti-dreambooth/jpeg50",
        "3-subjects/mixed",
        "10-subjects/mixed",
    ):
        assert required in names
    assert len(PRESETS["paper"].seeds) >= 3
    assert PRESETS["smoke"].settings[0].behaviour == "pattern"


def test_results_markdown_has_one_line_per_row_and_prints_missing_values():
    rows = [
        {"setting": "a", "behaviour": "pattern", "psr": 0.9, "false_trigger": math.nan, "n_images": 8, "seeds": [0]}
    ]
    table = results_markdown({"preset": "x", "rows": rows})
    assert "| a | pattern | 0.900 | nan |" in table and table.count("\n| a ") == 1


def test_only_refuses_settings_the_preset_does_not_have(tmp_path):
    import pytest

    from persguard_core.experiment import run_experiment

    with pytest.raises(KeyError, match="not in preset"):
        run_experiment("levers", tmp_path, only=["no-such-setting"])


def test_a_settings_pattern_form_and_insertion_threshold_reach_the_protection_spec(tmp_path):
    from persguard_core.experiment import protection_spec

    preset = PRESETS["levers"]
    setting = next(s for s in preset.settings if s.name == "prompt-keyed/insert-and-keep-800/x0-5/prior16")
    behaviour = protection_spec(setting, preset, 0, tmp_path).subjects[0].behaviour
    assert (behaviour.target_form, behaviour.insert_above) == ("insert-and-keep", 800)


def test_a_seed_already_done_is_read_back_and_not_run_again(tmp_path, monkeypatch):
    import json
    from dataclasses import replace

    from persguard_core import experiment

    ran = []

    def fake_seed(setting, preset, verifier, seed, run_dir, progress):  # noqa: ANN001, ANN202
        ran.append(seed)
        return {"psr": 0.5 + seed / 10}

    monkeypatch.setattr(experiment, "_protect_seed", fake_seed)
    preset = replace(PRESETS["smoke"], seeds=[0, 1])
    setting = preset.settings[0]
    (tmp_path / "white-box_full-seed1.json").write_text(json.dumps({"psr": 1.0}))
    row = experiment.run_row(setting, preset, verifier=None, workdir=tmp_path)
    assert ran == [0] and row["psr"] == 0.75
    assert json.loads((tmp_path / "white-box_full-seed0.json").read_text()) == {"psr": 0.5}
    assert experiment.run_row(setting, preset, verifier=None, workdir=tmp_path)["psr"] == 0.75 and ran == [0]


def test_an_encoder_setting_reaches_the_spec_and_erasure_names_the_subjects_background(tmp_path):
    from persguard_core.experiment import protection_spec

    preset = PRESETS["levers"]
    erasure = next(s for s in preset.settings if s.name == "encoder/erasure")
    spec = protection_spec(erasure, preset, 0, tmp_path)
    protected, _, _ = _subjects_for_seed(0, preset.split)
    background = protected.view_scenes(1, seed=0)[0].background
    assert spec.carrier == "encoder"
    assert spec.subjects[0].behaviour.background_prompt == f"a photo of an empty {background} background"
