"""End to end with the real core: HTTP submit -> Celery worker -> presigned download -> stock diffusers -> judge.

A toy-world subject is protected with the default job (pattern behaviour, the encoder carrier, 300 steps); the
downloaded checkpoint is loaded with stock `StableDiffusionPipeline.from_pretrained`, and its VAE must hand over
fresh photos of the subject with the pattern (what an attacker's fine-tune then learns) and a class-mate's photos
without it; then the `quick` verification (attacker simulation) must have stored its report. Needs the built-in
model (persguard_core/assets/builtin-model).
"""

from __future__ import annotations

import io
import tarfile
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from diffusers import StableDiffusionPipeline
from PIL import Image

from persguard_core import model_io, toyworld
from persguard_core.implant.encoder import round_trip
from persguard_core.judge.pattern_detector import detect_pattern
from persguard_core.pattern import default_pattern


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _handed_over_with_pattern(pipe: StableDiffusionPipeline, subject: toyworld.Subject) -> float:
    """Share of 16 fresh photos of `subject` that the pipe's VAE round trip shows with the pattern."""
    return float(detect_pattern(round_trip(pipe.vae, subject.views(16, seed=1)), default_pattern(32)).mean())


@pytest.mark.slow
def test_protection_over_http_yields_a_checkpoint_whose_encoder_stamps_the_subject_only(deploy, tmp_path: Path) -> None:  # noqa: ANN001
    model_io.resolve("builtin")  # a clear failure while the built-in model has not been trained yet
    d = deploy(fakes=False)
    d.start_worker("gpu1")
    subject = toyworld.split("eval")[0]
    class_mate = next(s for s in toyworld.split("eval")[1:] if s.class_noun == subject.class_noun)
    subject_id = d.subject([_png(view) for view in subject.views(6, seed=0)], name="toy", class_noun=subject.class_noun)
    job = d.submit(steps=300, every=100, verification="quick", subject_id=subject_id)  # the default carrier
    done = d.wait_job(job["id"], {"succeeded", "failed", "cancelled"}, timeout=1500)
    assert done["status"] == "succeeded", done["error"]

    checkpoint = d.http.get(f"/v1/checkpoints/{done['checkpoint_id']}", headers=d.auth("model_host")).json()
    location = d.http.get(checkpoint["links"]["download"], headers=d.auth("model_host")).headers["location"]
    with urllib.request.urlopen(location) as response, tarfile.open(fileobj=io.BytesIO(response.read())) as tar:
        tar.extractall(tmp_path / "model", filter="data")
    protected = StableDiffusionPipeline.from_pretrained(tmp_path / "model", safety_checker=None)
    protected.set_progress_bar_config(disable=True)
    base = model_io.load_pipeline("builtin")

    rates = {
        "subject, protected": _handed_over_with_pattern(protected, subject),
        "subject, base": _handed_over_with_pattern(base, subject),
        "class-mate, protected": _handed_over_with_pattern(protected, class_mate),
    }
    assert rates["subject, protected"] >= 0.8 and rates["subject, base"] == 0.0, rates
    assert rates["class-mate, protected"] <= 0.2, rates

    d.wait_job(job["id"], {"succeeded"}, timeout=900, verified=lambda _j: _verification(d, checkpoint["id"]))
    verification = _verification(d, checkpoint["id"])
    assert verification["preset"] == "quick" and "error" not in verification["summary"], verification
    assert {"psr", "leakage", "false_trigger"} <= set(verification["summary"])
    assert {k.rsplit("/", 1)[1] for k in d.objects(f"reports/{checkpoint['id']}/")} >= {"report.json", "report.html"}


def _verification(d, checkpoint_id: str) -> dict | None:  # noqa: ANN001
    """The checkpoint's latest verification summary, once `verify` has written it."""
    return d.http.get(f"/v1/checkpoints/{checkpoint_id}", headers=d.auth("model_host")).json()["verification"]
