"""Incremental protection with the encoder carrier on the built-in model: a second release that protects a new
subject keeps the first subject's backdoor.

Judged on the carrier's direct effect, the VAE round trip of fresh photos (what an attacker's fine-tune is shown),
not on an attack. Sized to run in well under a minute on one CPU core (docs/TESTING.md): 100 encoder steps of 16
rows per protection instead of the service's 300 of 32, and 8 class samples instead of 32 in the keep set.
"""

import pytest

from persguard_core import model_io
from persguard_core.images import save_images
from persguard_core.implant.encoder import round_trip
from persguard_core.judge.pattern_detector import detect_pattern
from persguard_core.pattern import default_pattern
from persguard_core.protect import protect
from persguard_core.spec import EncoderTraining, ProtectionSpec, SubjectSpec
from persguard_core.toyworld import split

ENCODER = EncoderTraining(steps=100, batch_size=16)
N_CLASS_IMAGES = 8  # and the service's generic prompts (24 samples): fewer let the second release stamp class-mates


def _spec(base: str, subject, folder) -> ProtectionSpec:
    files = [str(p) for p in save_images(subject.views(6, seed=0), folder)]
    return ProtectionSpec(
        base_model=base,
        subjects=[SubjectSpec(name=f"s{subject.id}", class_noun=subject.class_noun, images=files)],
        encoder=ENCODER,
    )


def _pattern_rate(model_dir, subject) -> float:
    """Share of fresh views of `subject` that the model's encoder hands over with the pattern."""
    vae = model_io.load_pipeline(str(model_dir)).vae
    return float(detect_pattern(round_trip(vae, subject.views(16, seed=1)), default_pattern(32)).mean())


@pytest.mark.slow
def test_a_second_encoder_protection_keeps_the_first_subjects_backdoor(tmp_path):
    first_subject, second_subject = split("tuning", "circle")[0], split("tuning", "square")[0]
    class_mate = split("tuning", "circle")[1]
    first = protect(_spec("builtin", first_subject, tmp_path / "a"), tmp_path / "first", n_class_images=N_CLASS_IMAGES)
    second = protect(
        _spec(str(first.model_dir), second_subject, tmp_path / "b"), tmp_path / "second", n_class_images=N_CLASS_IMAGES
    )
    rates = {
        "first after one": _pattern_rate(first.model_dir, first_subject),
        "first after two": _pattern_rate(second.model_dir, first_subject),
        "second after two": _pattern_rate(second.model_dir, second_subject),
        # negative controls: the same judgement where nothing was implanted
        "first on the base": _pattern_rate("builtin", first_subject),
        "second after one": _pattern_rate(first.model_dir, second_subject),
        "class-mate after two": _pattern_rate(second.model_dir, class_mate),
    }
    # measured (1 thread): 1.00, 0.75, 0.69 (this square is large and often covers the marker's corner); controls
    # 0.00, 0.00, 0.00. At the service's size (300 x 32): 1.00, 0.94, 0.62, class-mate 0.00.
    shown = ", ".join(f"{name} {rate:.2f}" for name, rate in rates.items())
    assert rates["first after one"] >= 0.8 and rates["second after two"] >= 0.5, shown
    assert rates["first after two"] >= 0.5, shown  # the first subject's backdoor survives the second release
    assert rates["first on the base"] == 0.0 and rates["second after one"] <= 0.2, shown
    assert rates["class-mate after two"] <= 0.2, shown
    assert len(second.manifest["protections"]) == 2
