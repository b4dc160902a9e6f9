"""Which subjects a seed protects and attacks, and the specs and attackers the research rows build."""

from dataclasses import replace

import pytest

from persguard_core.attacker import BUILTIN_LR_SCALE, RECIPES
from persguard_core.verify.run import CaseResult
from research.presets import PRESETS
from research.report import case_line
from research.subjects import attack_setting, class_mates, protection_spec, subjects_for_seed


def test_ten_subjects_in_one_model_are_distinct_and_never_their_unprotected_class_mates():
    chosen = [subjects_for_seed(i, "eval") for i in range(10)]
    protected = [p.id for p, _, _ in chosen]
    unprotected = {u.id for _, u, _ in chosen}
    assert len(set(protected)) == 10
    assert not set(protected) & unprotected
    for p, u, refs in chosen:
        assert p.class_noun == u.class_noun and all(r.class_noun == p.class_noun for r in refs)


def test_reported_and_tuning_subjects_never_overlap():
    tuning = {s.id for i in range(7) for s in subjects_for_seed(i, "tuning")[:2]}
    reported = {s.id for i in range(7) for s in subjects_for_seed(i, "eval")[:2]}
    assert not tuning & reported


def test_every_row_of_every_preset_builds_a_valid_spec_and_attacker(tmp_path):
    """The presets are data: each row must turn into a ProtectionSpec the core accepts and a known attack."""
    for name, preset in PRESETS.items():
        for setting in preset.settings:
            attacker = attack_setting(setting, seed=0)
            assert attacker.recipe.steps == (setting.attack_steps or attacker.recipe.steps), setting.name
            if setting.method == "persguard":
                spec = protection_spec(setting, preset, 0, tmp_path / name)
                assert len(spec.subjects) == setting.n_subjects and spec.carrier == setting.carrier, setting.name


def test_a_settings_pattern_form_and_insertion_threshold_reach_the_protection_spec(tmp_path):
    preset = PRESETS["levers"]
    setting = next(s for s in preset.settings if s.name == "prompt-keyed/insert-and-keep-800/x0-5/prior16")
    behaviour = protection_spec(setting, preset, 0, tmp_path).subjects[0].behaviour
    assert (behaviour.target_form, behaviour.insert_above) == ("insert-and-keep", 800)


def test_an_encoder_setting_reaches_the_spec_and_erasure_names_the_subjects_background(tmp_path):
    preset = PRESETS["levers"]
    erasure = next(s for s in preset.settings if s.name == "encoder/erasure")
    spec = protection_spec(erasure, preset, 0, tmp_path)
    protected, _, _ = subjects_for_seed(0, preset.split)
    background = protected.view_scenes(1, seed=0)[0].background
    assert spec.carrier == "encoder"
    assert spec.subjects[0].behaviour.background_prompt == f"a photo of an empty {background} background"


def test_the_attackers_prompt_follows_the_settings_knowledge_and_template():
    by_name = {s.name: s for s in PRESETS["carrier"].settings}
    white = attack_setting(by_name["encoder/white-box/full"], seed=0).recipe
    black = attack_setting(by_name["encoder/black-box/full"], seed=0).recipe
    template_only = attack_setting(by_name["encoder/white-box/full/black-box-template"], seed=0).recipe
    assert white.instance_prompt("circle") == "a photo of sks circle"
    assert black.instance_prompt("circle") == "a rendering of zqf circle"
    assert template_only.instance_prompt("circle") == "a rendering of sks circle"
    assert white.class_prompt("circle") == black.class_prompt("circle") == template_only.class_prompt("circle")


def test_a_rows_identifier_is_the_attackers_and_what_a_white_box_protection_knows(tmp_path):
    preset = PRESETS["heard-identifier"]
    rows = {s.identifier: s for s in preset.settings}
    attacker = attack_setting(rows["zwc"], seed=0).recipe
    assert attacker.instance_prompt("circle") == "a photo of zwc circle"
    assert protection_spec(rows["zwc"], preset, 0, tmp_path).knowledge.trigger_prompts("circle") == [
        "a photo of zwc circle"
    ]
    assert protection_spec(rows["sks"], preset, 0, tmp_path).knowledge.trigger_prompts("circle") == [
        "a photo of sks circle"
    ]


def test_the_presets_base_model_is_the_one_protected(tmp_path):
    preset = replace(PRESETS["heard-identifier"], base_model=str(tmp_path / "stage4"))
    assert protection_spec(preset.settings[0], preset, 0, tmp_path).base_model == str(tmp_path / "stage4")
    assert protection_spec(preset.settings[0], PRESETS["levers"], 0, tmp_path).base_model == "builtin"


def test_a_rows_lr_scale_replaces_the_builtin_scale():
    by_name = {s.name: s for s in PRESETS["fresh"].settings}
    naive = attack_setting(by_name["encoder/white-box/full"], seed=0).recipe
    diffusers = attack_setting(by_name["encoder/diffusers-lr/3200-steps"], seed=0).recipe
    assert diffusers.learning_rate == RECIPES["full"].learning_rate == naive.learning_rate / BUILTIN_LR_SCALE
    assert diffusers.steps == 3200


def test_each_class_attacks_one_unprotected_class_mate_per_protected_class():
    for n, seed in ((3, 0), (10, 1)):
        chosen = [subjects_for_seed(seed + i, "eval") for i in range(n)]
        protected = {p.id for p, _, _ in chosen}
        first, each = class_mates(chosen, "first"), class_mates(chosen, "each-class")
        assert [m.id for m in first] == [chosen[0][1].id]
        assert each[0].id == first[0].id
        assert sorted(m.class_noun for m in each) == sorted({p.class_noun for p, _, _ in chosen})
        assert not {m.id for m in each} & protected
    with pytest.raises(ValueError, match="each-class"):
        class_mates(chosen, "all")


def test_a_class_mates_progress_line_names_the_behaviours_seen_on_both_models():
    mate = CaseResult(
        "subject-7", False, 0.25, 0.7, 0.8, 0.125, by_kind={"pattern": 0.25}, by_kind_base={"target": 0.125}
    )
    line = case_line(mate)
    assert "protective 0.250 (pattern 0.250)" in line
    assert "on the base: protective 0.125 (target 0.125), similarity 0.800" in line
    assert case_line(CaseResult("subject-1", True, 1.0, 0.5, behaviour="pattern")).endswith("similarity 0.500")


def test_the_fresh_split_gives_twelve_distinct_subjects_of_every_class_never_used_before():
    from persguard_core.toyworld import CLASS_NAMES, SPLITS

    fresh = PRESETS["fresh"]
    chosen = [subjects_for_seed(seed, fresh.split) for seed in fresh.seeds]
    protected, mates = {p.id for p, _, _ in chosen}, {u.id for _, u, _ in chosen}
    assert len(protected) == len(fresh.seeds) >= 12 and not protected & mates
    assert {p.class_noun for p, _, _ in chosen} == set(CLASS_NAMES)
    earlier = {i for name, ids in SPLITS.items() if name != "fresh" for i in ids}
    assert not (protected | mates) & earlier
    assert fresh.attack_draws >= 2
