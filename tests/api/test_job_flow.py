"""The whole flow in one process: register, protect, run, follow the job, download the checkpoint."""

from __future__ import annotations

import hashlib
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from api.main import default_runner
from common.jobs import InProcessRunner
from common.models import AuditEvent
from common.settings import Settings
from common.storage import LocalStorage
from tests.api.api_testkit import ApiEnv, fake_protect, make_subject, protect


@pytest.fixture(params=["sqlite", "postgres"])
def running_api(request: pytest.FixtureRequest, make_env: Callable[..., ApiEnv]) -> ApiEnv:
    """The API with an in-process runner whose implantation is `fake_protect`."""
    return make_env(request.param, lambda sf, storage: InProcessRunner(sf, storage, fake_protect))


def _download(env: ApiEnv, url: str) -> bytes:
    if isinstance(env.storage, LocalStorage):
        response = env.client.get(url)
        assert response.status_code == 200, response.text
        return response.content
    with urllib.request.urlopen(url) as response:
        return response.read()


def test_protection_runs_to_a_downloadable_checkpoint(running_api: ApiEnv) -> None:
    api = running_api
    job = protect(api, [make_subject(api)["id"]]).json()
    assert api.runner.wait_idle(timeout=60)
    done = api.client.get(f"/v1/jobs/{job['id']}", headers=api.auth("alpha:rights_holder")).json()
    assert (done["status"], done["progress"], done["losses"], done["attempts"]) == ("succeeded", 1.0, {"bb": 0.25}, 1)
    assert done["links"]["checkpoint"] == f"/v1/checkpoints/{done['checkpoint_id']}"

    host = api.auth("beta:model_host")
    checkpoint = api.client.get(done["links"]["checkpoint"], headers=host).json()
    assert checkpoint["job_id"] == job["id"] and checkpoint["manifest"]["files"][0]["path"] == "unet.safetensors"
    redirect = api.client.get(checkpoint["links"]["download"], headers=host)
    assert redirect.status_code == 307
    archive = _download(api, redirect.headers["location"])
    assert hashlib.sha256(archive).hexdigest() == checkpoint["sha256"]
    assert api.count(AuditEvent.__table__.select().where(AuditEvent.action == "checkpoint.download").subquery()) == 1


def test_the_real_core_runs_a_short_protection_to_a_checkpoint(make_env: Callable[..., ApiEnv]) -> None:
    api = make_env("sqlite", lambda sf, storage: InProcessRunner(sf, storage))
    advanced = {"encoder": {"batch_size": 4}}  # the default carrier, the VAE encoder, in small batches
    subject = make_subject(api)["id"]
    job = protect(api, [subject], who="alpha:admin", steps=2, advanced=advanced, verification="none").json()
    assert api.runner.wait_idle(timeout=300)
    done = api.client.get(f"/v1/jobs/{job['id']}", headers=api.auth("alpha:rights_holder")).json()
    assert done["status"] == "succeeded", done["error"]
    assert done["step"] == done["total_steps"] == 2
    checkpoint = api.client.get(done["links"]["checkpoint"], headers=api.auth("alpha:admin")).json()
    paths = {f["path"] for f in checkpoint["manifest"]["files"]}
    assert {"persguard.json", "README.md", "vae/diffusion_pytorch_model.safetensors"} <= paths


def test_local_download_link_is_refused_when_tampered(make_env: Callable[..., ApiEnv]) -> None:
    api = make_env("sqlite", lambda sf, storage: InProcessRunner(sf, storage, fake_protect))
    protect(api, [make_subject(api)["id"]])
    assert api.runner.wait_idle(timeout=60)
    checkpoint = api.client.get("/v1/checkpoints", headers=api.auth("alpha:admin")).json()["items"][0]
    url = api.client.get(checkpoint["links"]["download"], headers=api.auth("alpha:admin")).headers["location"]
    response = api.client.get(url.replace("sig=", "sig=0"))
    assert response.status_code == 403 and "invalid or expired" in response.json()["detail"]


def test_the_embedded_runner_uses_the_configured_protect_and_verify_functions(
    make_env: Callable[..., ApiEnv], tmp_path: Path
) -> None:
    settings = Settings(
        protect_fn="tests.api.api_testkit:fake_protect", verify_fn="tests.worker.fakes:fake_verify", workdir=tmp_path
    )
    api = make_env("sqlite", lambda sf, storage: default_runner(settings, sf, storage))
    job = protect(api, [make_subject(api)["id"]], steps=1).json()
    assert api.runner.wait_idle(timeout=120)
    done = api.client.get(f"/v1/jobs/{job['id']}", headers=api.auth("alpha:rights_holder")).json()
    assert done["status"] == "succeeded", done["error"]
    checkpoint = api.client.get(done["links"]["checkpoint"], headers=api.auth("alpha:admin")).json()
    assert [f["path"] for f in checkpoint["manifest"]["files"]] == ["unet.safetensors"]
    assert checkpoint["verification"]["summary"]["psr"] == 1.0


@pytest.mark.parametrize(("bound", "passes"), [(0.02, False), (0.5, True)])
def test_a_verification_whose_utility_drop_exceeds_the_configured_bound_does_not_pass_and_says_why(
    make_env: Callable[..., ApiEnv], tmp_path: Path, bound: float, passes: bool
) -> None:
    settings = Settings(
        protect_fn="tests.api.api_testkit:fake_protect",
        verify_fn="tests.worker.fakes:fake_verify_damaging",
        verify_max_utility_drop=bound,
        workdir=tmp_path,
    )
    api = make_env("sqlite", lambda sf, storage: default_runner(settings, sf, storage))
    job = protect(api, [make_subject(api)["id"]], steps=1).json()
    assert api.runner.wait_idle(timeout=120)
    done = api.client.get(f"/v1/jobs/{job['id']}", headers=api.auth("alpha:rights_holder")).json()
    verification = api.client.get(done["links"]["checkpoint"], headers=api.auth("alpha:admin")).json()["verification"]
    assert verification["summary"]["psr"] == 1.0 and verification["summary"]["utility_drop"] == 0.3
    assert verification["passed"] is passes
    failed = verification["summary"]["failed_checks"]
    assert failed == [] if passes else (len(failed) == 1 and "utility drop 0.300" in failed[0])
