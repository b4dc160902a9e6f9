"""End to end with the real core: HTTP submit -> Celery worker -> presigned download -> stock diffusers -> judge.

A toy-world subject is protected with the pattern behaviour by a short implantation (400 steps, batch 4, L_BB +
L_PP only); the downloaded checkpoint is loaded with stock `StableDiffusionPipeline.from_pretrained` and must show
the pattern for the trigger prompt clearly more often (+0.3) than the base model does; then the `quick`
verification (attacker simulation) must have stored its report. Needs the built-in model
(persguard_core/assets/builtin-model).
"""

from __future__ import annotations

import io
import tarfile
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from PIL import Image

from persguard_core import model_io, toyworld
from persguard_core.judge.pattern_detector import detect_pattern
from persguard_core.pattern import default_pattern

N_IMAGES = 16


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _sample(pipe: StableDiffusionPipeline, prompt: str) -> np.ndarray:
    generators = [torch.Generator().manual_seed(i) for i in range(N_IMAGES)]
    images = pipe([prompt] * N_IMAGES, num_inference_steps=25, generator=generators, output_type="np").images
    return (np.clip(images, 0, 1) * 255).round().astype(np.uint8)


@pytest.mark.slow
def test_protection_over_http_yields_a_checkpoint_whose_trigger_prompt_shows_the_pattern(
    deploy, tmp_path: Path
) -> None:  # noqa: ANN001
    model_io.resolve("builtin")  # a clear failure while the built-in model has not been trained yet
    d = deploy(fakes=False)
    d.start_worker("gpu1")
    subject = toyworld.split("eval")[0]
    subject_id = d.subject([_png(view) for view in subject.views(6, seed=0)], name="toy", class_noun=subject.class_noun)
    job = d.submit(  # short: no simulated attacker in the loop, so 400 steps cost about a minute of one CPU core
        steps=400,
        every=100,
        verification="quick",
        subject_id=subject_id,
        training={"batch_size": 4},
        losses={"retention_mode": "off", "release": 0.0},
    )
    done = d.wait_job(job["id"], {"succeeded", "failed", "cancelled"}, timeout=1500)
    assert done["status"] == "succeeded", done["error"]

    checkpoint = d.http.get(f"/v1/checkpoints/{done['checkpoint_id']}", headers=d.auth("model_host")).json()
    location = d.http.get(checkpoint["links"]["download"], headers=d.auth("model_host")).headers["location"]
    with urllib.request.urlopen(location) as response, tarfile.open(fileobj=io.BytesIO(response.read())) as tar:
        tar.extractall(tmp_path / "model", filter="data")
    protected = StableDiffusionPipeline.from_pretrained(tmp_path / "model", safety_checker=None)
    protected.set_progress_bar_config(disable=True)
    base = model_io.load_pipeline("builtin")

    prompt = f"a photo of sks {subject.class_noun}"
    pattern = default_pattern(32)
    protected_rate = float(detect_pattern(_sample(protected, prompt), pattern).mean())
    base_rate = float(detect_pattern(_sample(base, prompt), pattern).mean())
    assert protected_rate >= base_rate + 0.3, (protected_rate, base_rate)

    d.wait_job(job["id"], {"succeeded"}, timeout=900, verified=lambda _j: _verification(d, checkpoint["id"]))
    verification = _verification(d, checkpoint["id"])
    assert verification["preset"] == "quick" and "error" not in verification["summary"], verification
    assert {"psr", "leakage", "false_trigger"} <= set(verification["summary"])
    assert {k.rsplit("/", 1)[1] for k in d.objects(f"reports/{checkpoint['id']}/")} >= {"report.json", "report.html"}


def _verification(d, checkpoint_id: str) -> dict | None:  # noqa: ANN001
    """The checkpoint's latest verification summary, once `verify` has written it."""
    return d.http.get(f"/v1/checkpoints/{checkpoint_id}", headers=d.auth("model_host")).json()["verification"]
