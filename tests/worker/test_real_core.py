"""The real core through a real worker on a tiny random model registered over the API (no built-in model needed):
the default implantation runs, the checkpoint is a loadable diffusers folder, and the real verification's refusal
(no judge for 64 px images) is recorded as a verification that did not pass."""

from __future__ import annotations

import io
import tarfile
import urllib.request
from pathlib import Path

from diffusers import StableDiffusionPipeline

from tests.tiny_sd import tiny_sd_pipeline


def test_real_core_protects_on_a_registered_tiny_model_and_records_the_verification_refusal(
    deploy, tmp_path: Path
) -> None:
    folder = tmp_path / "tiny-sd1"
    tiny_sd_pipeline("sd1").save_pretrained(folder, safe_serialization=True)
    d = deploy(fakes=False)
    d.start_worker("gpu1")
    registered = d.http.post(
        "/v1/models", headers=d.auth("admin"), json={"name": "tiny", "source": str(folder), "description": "test"}
    )
    assert registered.status_code == 201, registered.text

    job = d.submit(  # the default carrier, the VAE encoder, for 3 steps
        steps=3, every=2, verification="quick", base_model="tiny", advanced={"encoder": {"batch_size": 2}}
    )
    done = d.wait_job(job["id"], {"succeeded", "failed", "cancelled"}, timeout=300)
    assert done["status"] == "succeeded", done["error"]
    assert (done["step"], done["total_steps"]) == (3, 3)

    checkpoint = d.http.get(f"/v1/checkpoints/{done['checkpoint_id']}", headers=d.auth("model_host")).json()
    assert {"persguard.json", "unet/diffusion_pytorch_model.safetensors"} <= {
        f["path"] for f in checkpoint["manifest"]["files"]
    }
    location = d.http.get(checkpoint["links"]["download"], headers=d.auth("model_host")).headers["location"]
    with urllib.request.urlopen(location) as response, tarfile.open(fileobj=io.BytesIO(response.read())) as tar:
        tar.extractall(tmp_path / "model", filter="data")
    StableDiffusionPipeline.from_pretrained(tmp_path / "model", safety_checker=None)  # stock diffusers loads it

    def verification() -> dict | None:
        current = d.http.get(f"/v1/checkpoints/{checkpoint['id']}", headers=d.auth("model_host")).json()
        return current["verification"]

    d.wait_job(job["id"], {"succeeded"}, timeout=120, verified=lambda _j: verification())
    result = verification()
    assert result["preset"] == "quick" and result["passed"] is False
    assert "judge" in result["summary"]["error"], result
    assert not d.objects("jobs/"), "no training state left behind"
