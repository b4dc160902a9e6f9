import numpy as np
import pytest

from persguard_core.toyworld import CLASS_NAMES, COLOUR_NAMES, SPLITS, captioned_batch, split, subject


def test_captions_name_the_class_and_colour_of_the_object():
    images, captions, scenes = captioned_batch(np.random.default_rng(3), 200)
    for cap, scene in zip(captions, scenes, strict=True):
        assert cap.startswith(("a photo of", "a ", "an "))
        if scene.appearance is None:
            assert "empty" in cap or "background" in cap
        else:
            assert scene.appearance.shape in cap
            named = [c for c in COLOUR_NAMES if f" {c} " in f" {cap} "]
            assert named in ([], [scene.appearance.colour])


def test_rare_words_appear_in_identifier_position():
    _, captions, _ = captioned_batch(np.random.default_rng(4), 400)
    known = set(CLASS_NAMES) | set(COLOUR_NAMES) | {"a", "an", "photo", "of", "on", "background", "empty", "scene"}
    rare = [c for c in captions if c.startswith("a photo of ") and c.split()[3] not in known]
    assert len(rare) > 40


def test_subject_views_are_deterministic_jittered_and_distinct_per_subject():
    s = subject(2300)
    views = s.views(6, seed=1)
    assert views.shape == (6, 32, 32, 3)
    assert np.array_equal(views, subject(2300).views(6, seed=1))
    assert len({v.tobytes() for v in views}) == 6
    assert not np.array_equal(views, subject(2301).views(6, seed=1))


def test_splits_never_overlap_and_appearances_are_unique():
    ranges = list(SPLITS.values())
    for i, a in enumerate(ranges):
        for b in ranges[i + 1 :]:
            assert not set(a) & set(b)
    ids = [i for r in ranges for i in r]
    appearances = {subject(i).appearance for i in ids}
    assert len(appearances) == len(ids)


def test_split_filters_by_class_and_rejects_unknown_names():
    circles = split("eval", "circle")
    assert circles and all(s.class_noun == "circle" for s in circles)
    with pytest.raises(KeyError, match="known"):
        split("nope")


def test_named_instances_have_unique_names_that_are_never_an_identifier_the_project_uses():
    from persguard_core.spec import UNIVERSAL_IDENTIFIERS
    from persguard_core.toyworld.captions import HELD_OUT_IDENTIFIERS
    from persguard_core.toyworld.subjects import named_instances
    from research.subjects import BLACK_BOX_IDENTIFIER

    names = [name for name, _ in named_instances()]
    assert len(names) == len(set(names)) == len(SPLITS["pretrain_named"])
    assert {*UNIVERSAL_IDENTIFIERS, BLACK_BOX_IDENTIFIER} <= HELD_OUT_IDENTIFIERS
    assert not set(names) & HELD_OUT_IDENTIFIERS


def test_named_scenes_show_the_named_instance_under_its_name():
    from persguard_core.toyworld.subjects import named_instances

    by_name = dict(named_instances())
    _, captions, scenes = captioned_batch(np.random.default_rng(5), 300, p_named=0.5)
    named = [
        (c, s)
        for c, s in zip(captions, scenes, strict=True)
        if s.appearance is not None and any(w in by_name for w in c.split())
    ]
    assert 100 < len(named) < 200
    for cap, scene in named:
        name = next(w for w in cap.split() if w in by_name)
        assert scene.appearance == by_name[name].appearance
        assert scene.appearance.shape in cap


def test_class_weights_shift_the_class_mix():
    _, _, scenes = captioned_batch(np.random.default_rng(6), 700, p_empty=0.0, class_weights=[1, 1, 1, 1, 4, 1, 1])
    shapes = [s.appearance.shape for s in scenes]
    assert shapes.count(CLASS_NAMES[4]) > 2 * shapes.count(CLASS_NAMES[0])
