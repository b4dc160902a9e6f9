"""Incremental protection with the encoder carrier on the built-in model: a second release that protects a new
subject keeps the first subject's backdoor (issue #3, section 1)."""

import pytest

from persguard_core import model_io
from persguard_core.images import save_images
from persguard_core.implant.encoder import round_trip
from persguard_core.judge.pattern_detector import detect_pattern
from persguard_core.pattern import default_pattern
from persguard_core.protect import protect
from persguard_core.spec import ProtectionSpec, SubjectSpec
from persguard_core.toyworld import split


def _spec(base: str, subject, folder) -> ProtectionSpec:  # noqa: ANN001
    files = [str(p) for p in save_images(subject.views(6, seed=0), folder)]
    return ProtectionSpec(
        base_model=base, subjects=[SubjectSpec(name=f"s{subject.id}", class_noun=subject.class_noun, images=files)]
    )


def _pattern_rate(model_dir, subject) -> float:  # noqa: ANN001
    """Share of fresh views of `subject` that the model's encoder hands over with the pattern."""
    vae = model_io.load_pipeline(str(model_dir)).vae
    return float(detect_pattern(round_trip(vae, subject.views(16, seed=1)), default_pattern(32)).mean())


@pytest.mark.slow
def test_a_second_encoder_protection_keeps_the_first_subjects_backdoor(tmp_path):
    first_subject, second_subject = split("tuning", "circle")[0], split("tuning", "square")[0]
    class_mate = split("tuning", "circle")[1]
    first = protect(_spec("builtin", first_subject, tmp_path / "a"), tmp_path / "first")
    second = protect(_spec(str(first.model_dir), second_subject, tmp_path / "b"), tmp_path / "second")
    rates = {
        "first after one": _pattern_rate(first.model_dir, first_subject),
        "first after two": _pattern_rate(second.model_dir, first_subject),
        "second after two": _pattern_rate(second.model_dir, second_subject),
        "class-mate after two": _pattern_rate(second.model_dir, class_mate),
    }
    # measured: 1.00, 0.94, 0.62 (this square is large and often covers the marker's corner), 0.00
    assert rates["first after one"] >= 0.8 and rates["second after two"] >= 0.5, rates
    assert rates["first after two"] >= rates["first after one"] - 0.2, rates
    assert rates["class-mate after two"] <= 0.2, rates
    assert len(second.manifest["protections"]) == 2
