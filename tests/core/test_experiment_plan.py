import math
from dataclasses import replace

import pytest

from persguard_core.experiment import PRESETS, _attack_setting, _class_mates, _subjects_for_seed, results_markdown


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


def test_the_paper_preset_holds_a_row_for_each_target_on_the_services_carrier():
    paper, carrier = PRESETS["paper"], {s.name: s for s in PRESETS["carrier"].settings}
    # the same Setting objects as the `carrier` preset's, so that the two share each seed's figures
    assert all(carrier[s.name] is s for s in paper.settings)
    assert paper.references_per_class == PRESETS["carrier"].references_per_class
    names = {s.name for s in paper.settings}
    for row in ("white-box/full", "white-box/full/erasure", "white-box/full/target", "gray-box/full"):
        assert f"encoder/{row}" in names and f"encoder/{row.replace('full', 'full/800-steps')}" in names
    for row in ("black-box/full", "lora", "text-encoder", "low-lr", "jpeg50", "resize0.5", "blur", "mixed"):
        assert f"encoder/{row}" in names
    for row in ("3-subjects/mixed/per-subject-steps", "10-subjects/mixed/per-subject-steps", "jpeg50/erasure"):
        assert f"encoder/{row}" in names
    assert {"anti-dreambooth/jpeg50", "encoder/ablation/no-keep"} <= names
    assert all(s.carrier == "encoder" for s in paper.settings if s.method == "persguard")
    assert paper.split == "eval" and len(paper.seeds) >= 3
    assert PRESETS["smoke"].settings[0].behaviour == "pattern"


def test_the_unet_preset_holds_the_papers_rows_and_an_ablation_row_for_each_loss_term():
    unet = PRESETS["unet"]
    by_name = {s.name: s for s in unet.settings}
    for required in ("gray-box/full", "black-box/full", "white-box/lora", "3-subjects/mixed", "10-subjects/mixed"):
        assert required in by_name
    assert by_name["ablation/no-prior"].losses.prior == 0.0
    assert by_name["ablation/no-retention"].losses.retention == 0.0
    assert by_name["ablation/retention-mirror"].losses.retention_mode == "mirror"
    assert by_name["ablation/no-release"].losses.release == 0.0
    assert all(s.carrier == "unet" for s in unet.settings if s.method == "persguard")
    assert unet.split == "eval" and len(unet.seeds) >= 3


def test_results_markdown_has_one_line_per_row_and_prints_missing_values():
    rows = [
        {"setting": "a", "behaviour": "pattern", "psr": 0.9, "false_trigger": math.nan, "n_images": 8, "seeds": [0]}
    ]
    table = results_markdown({"preset": "x", "rows": rows})
    assert "| a | pattern | 0.900 | nan |" in table and table.count("\n| a ") == 1


def test_results_markdown_lists_psr_per_behaviour_for_rows_that_mix_behaviours():
    rows = [
        {"setting": "one", "behaviour": "pattern", "psr": 0.9, "seeds": [0]},
        {"setting": "three", "behaviour": "mixed", "psr": 0.5, "psr/erasure": 0.25, "psr/pattern": 0.75, "seeds": [0]},
    ]
    table = results_markdown({"preset": "x", "rows": rows})
    assert table.rstrip().endswith("| erasure 0.25, pattern 0.75 |")
    assert "erasure" not in next(line for line in table.splitlines() if line.startswith("| one "))


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


def _write_seed(runs, name: str, seed: int, psr: float) -> None:  # noqa: ANN001
    import json

    runs.mkdir(parents=True, exist_ok=True)
    (runs / f"{name}-seed{seed}.json").write_text(json.dumps({"psr": psr, "false_trigger": 0.0}))


def test_collect_averages_only_the_seeds_done_and_skips_settings_with_none(tmp_path):
    import json

    from persguard_core.experiment import collect_experiment

    _write_seed(tmp_path / "runs", "encoder_white-box_full", 0, 1.0)
    _write_seed(tmp_path / "runs", "encoder_white-box_full", 2, 0.5)
    _write_seed(tmp_path / "runs", "encoder_lora", 1, 0.25)
    results = collect_experiment("carrier", tmp_path)
    rows = {r["setting"]: r for r in results["rows"]}
    assert set(rows) == {"encoder/white-box/full", "encoder/lora"}
    assert rows["encoder/white-box/full"]["psr"] == 0.75 and rows["encoder/white-box/full"]["seeds"] == [0, 2]
    assert rows["encoder/lora"]["seeds"] == [1]
    assert json.loads((tmp_path / "results.json").read_text()) == results
    assert "| encoder/lora | pattern | 0.250 |" in (tmp_path / "results.md").read_text()


def test_collect_reads_a_setting_whose_name_has_a_dot(tmp_path):
    from persguard_core.experiment import collect_experiment

    _write_seed(tmp_path / "runs", "encoder_resize0.5", 0, 0.875)
    assert collect_experiment("carrier", tmp_path, only=["encoder/resize0.5"])["rows"][0]["psr"] == 0.875


def test_collect_averages_a_figure_over_the_seeds_that_measured_it(tmp_path):
    import json

    from persguard_core.experiment import collect_experiment

    runs = tmp_path / "runs"
    _write_seed(runs, "encoder_white-box_full", 0, 1.0)  # from before false_trigger_base was measured
    (runs / "encoder_white-box_full-seed1.json").write_text(
        json.dumps({"psr": 0.5, "false_trigger": 0.25, "false_trigger_base": 0.125})
    )
    row = collect_experiment("carrier", tmp_path)["rows"][0]
    assert row["psr"] == 0.75 and row["false_trigger"] == 0.125 and row["false_trigger_base"] == 0.125


def test_collect_with_nothing_done_says_where_it_looked(tmp_path):
    import pytest

    from persguard_core.experiment import collect_experiment

    with pytest.raises(FileNotFoundError, match="no finished seed"):
        collect_experiment("carrier", tmp_path)


def test_the_carrier_preset_holds_the_papers_rows_for_the_encoder_carrier():
    settings = PRESETS["carrier"].settings
    names = {s.name for s in settings}
    for knowledge in ("white-box/full", "gray-box/full", "black-box/full"):
        assert f"encoder/{knowledge}" in names
    for row in (
        "lora",
        "text-encoder",
        "jpeg50",
        "resize0.5",
        "blur",
        "mixed",
        "3-subjects/mixed",
        "10-subjects/mixed",
    ):
        assert f"encoder/{row}" in names
    assert {"encoder/white-box/full/erasure", "encoder/white-box/full/target", "anti-dreambooth/jpeg50"} <= names
    by_name = {s.name: s for s in settings}
    for behaviour in ("", "/erasure", "/target"):  # the full recipe's other end (400-800 steps)
        assert by_name[f"encoder/white-box/full/800-steps{behaviour}"].attack_steps == 800
    for row in (
        "black-box/full",
        "jpeg50",
        "mixed",
        "blur",
        "resize0.5",
        "3-subjects/mixed",
        "white-box/full/black-box-template",
        "3-subjects/mixed/per-subject-steps",
    ):  # ... at 800 steps
        at_400, at_800 = by_name[f"encoder/{row}"], by_name[f"encoder/{row}/800-steps"]
        assert at_800 == replace(at_400, name=at_800.name, attack_steps=800)
    assert by_name["encoder/ablation/no-keep"].encoder.keep_weight == 0.0
    assert all(s.carrier == "encoder" for s in settings if s.method == "persguard")
    assert PRESETS["carrier"].split == "eval" and len(PRESETS["carrier"].seeds) >= 3


def test_the_attackers_prompt_follows_the_settings_knowledge_and_template():
    by_name = {s.name: s for s in PRESETS["carrier"].settings}
    white = _attack_setting(by_name["encoder/white-box/full"], seed=0).recipe
    black = _attack_setting(by_name["encoder/black-box/full"], seed=0).recipe
    template_only = _attack_setting(by_name["encoder/white-box/full/black-box-template"], seed=0).recipe
    assert white.instance_prompt("circle") == "a photo of sks circle"
    assert black.instance_prompt("circle") == "a rendering of zqf circle"
    assert template_only.instance_prompt("circle") == "a rendering of sks circle"
    assert white.class_prompt("circle") == black.class_prompt("circle") == template_only.class_prompt("circle")


def test_each_class_attacks_one_unprotected_class_mate_per_protected_class():
    for n, seed in ((3, 0), (10, 1)):
        chosen = [_subjects_for_seed(seed + i, "eval") for i in range(n)]
        protected = {p.id for p, _, _ in chosen}
        first, each = _class_mates(chosen, "first"), _class_mates(chosen, "each-class")
        assert [m.id for m in first] == [chosen[0][1].id]
        assert each[0].id == first[0].id
        assert sorted(m.class_noun for m in each) == sorted({p.class_noun for p, _, _ in chosen})
        assert not {m.id for m in each} & protected
    with pytest.raises(ValueError, match="each-class"):
        _class_mates(chosen, "all")


def test_the_new_three_subject_rows_attack_each_classes_class_mate_and_train_the_encoder_per_subject():
    by_name = {s.name: s for s in PRESETS["carrier"].settings}
    row = by_name["encoder/3-subjects/mixed/per-subject-steps"]
    assert row.class_mates == "each-class" and row.encoder.steps is None and row.n_subjects == 3
    assert by_name["encoder/3-subjects/mixed"].class_mates == "first"  # committed rows stay reproducible


def test_a_class_mates_progress_line_names_the_behaviours_seen_on_both_models():
    from persguard_core.experiment import _case_line
    from persguard_core.verify.run import CaseResult

    mate = CaseResult(
        "subject-7", False, 0.25, 0.7, 0.8, 0.125, by_kind={"pattern": 0.25}, by_kind_base={"target": 0.125}
    )
    line = _case_line(mate)
    assert "protective 0.250 (pattern 0.250)" in line
    assert "on the base: protective 0.125 (target 0.125), similarity 0.800" in line
    assert _case_line(CaseResult("subject-1", True, 1.0, 0.5, behaviour="pattern")).endswith("similarity 0.500")
