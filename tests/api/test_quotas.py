"""Per-tenant quotas (active jobs, subjects, stored image bytes) and the per-key request rate: each a 429
problem+json with Retry-After that names the limit and how to free it; refused requests change nothing."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from api.images import normalise_image
from common.models import ProtectionJob, Subject, SubjectImage
from tests.api.api_testkit import ApiEnv, image_bytes, make_subject, protect, upload

RH = "alpha:rights_holder"


def _assert_429(response: httpx.Response, kind: str, *fragments: str, max_retry_after: int = 3600) -> dict:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert 1 <= int(response.headers["retry-after"]) <= max_retry_after
    problem = response.json()
    assert problem["status"] == 429 and problem["type"].endswith(f"/{kind}"), problem
    for fragment in fragments:
        assert fragment in problem["detail"], problem
    return problem


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_active_jobs_are_capped_per_tenant(make_env: Callable[..., ApiEnv], backend: str) -> None:
    env = make_env(backend, max_active_jobs_per_tenant=2)
    subject = make_subject(env)["id"]
    first = protect(env, [subject], key="one")
    assert first.status_code == 202 and protect(env, [subject]).status_code == 202
    refused = _assert_429(protect(env, [subject]), "quota-exceeded", "2 active jobs", "limit is 2", "cancel")
    assert refused["quota"] == "active_jobs"
    assert env.count(ProtectionJob) == 2, "a refused request queues nothing"
    assert protect(env, [subject], key="one").json()["id"] == first.json()["id"], "a replay is not a new job"
    other = make_subject(env, who="beta:rights_holder")["id"]
    assert protect(env, [other], who="beta:rights_holder").status_code == 202, "another tenant has its own quota"

    cancel = env.client.post(f"/v1/jobs/{first.json()['id']}/cancel", headers=env.auth(RH))
    assert cancel.status_code == 200
    assert protect(env, [subject]).status_code == 202, "cancelling a job frees its place"
    retry = env.client.post(f"/v1/jobs/{first.json()['id']}/retry", headers=env.auth("alpha:admin"))
    _assert_429(retry, "quota-exceeded", "active jobs")


def test_registered_subjects_are_capped_per_tenant(make_env: Callable[..., ApiEnv]) -> None:
    env = make_env("sqlite", max_subjects_per_tenant=2)
    first = make_subject(env, seed=0)
    make_subject(env, seed=1)
    stored = env.object_keys()
    form = upload([image_bytes(200 + i) for i in range(3)])
    refused = env.client.post("/v1/subjects", headers=env.auth(RH), **form)
    problem = _assert_429(refused, "quota-exceeded", "2 subjects", "limit is 2", "DELETE /v1/subjects")
    assert problem["quota"] == "subjects"
    assert env.count(Subject) == 2 and env.object_keys() == stored, "a refused upload stores nothing"
    assert make_subject(env, who="beta:rights_holder", seed=3)["tenant_id"] != first["tenant_id"]

    assert env.client.delete(f"/v1/subjects/{first['id']}", headers=env.auth(RH)).status_code == 204
    assert env.client.post("/v1/subjects", headers=env.auth(RH), **form).status_code == 201


def test_stored_image_bytes_are_capped_per_tenant(make_env: Callable[..., ApiEnv]) -> None:
    def stored_size(seed: int) -> int:
        return sum(len(normalise_image(image_bytes(seed * 100 + i), "x.png", 4096**2).png) for i in range(3))

    limit = stored_size(0) + stored_size(1) // 2
    env = make_env("sqlite", max_subject_bytes_per_tenant=limit)
    make_subject(env, seed=0)
    stored = env.object_keys()
    form = upload([image_bytes(100 + i) for i in range(3)])
    refused = env.client.post("/v1/subjects", headers=env.auth(RH), **form)
    problem = _assert_429(refused, "quota-exceeded", f"{stored_size(1):,} bytes", f"limit is {limit:,}", "DELETE")
    assert problem["quota"] == "subject_bytes"
    assert env.count(SubjectImage) == 3 and env.object_keys() == stored
    assert make_subject(env, who="beta:rights_holder", seed=1)


def test_the_default_quotas_are_generous(make_env: Callable[..., ApiEnv]) -> None:
    settings = make_env("sqlite").settings
    assert settings.max_active_jobs_per_tenant >= 100
    assert settings.max_subjects_per_tenant >= 1000
    assert settings.max_subject_bytes_per_tenant >= 10 * 1024**3
    assert settings.rate_limit_per_s >= 100 and settings.rate_limit_burst >= settings.rate_limit_per_s


def test_requests_are_rate_limited_per_key(make_env: Callable[..., ApiEnv]) -> None:
    env = make_env("sqlite", rate_limit_per_s=0.1, rate_limit_burst=3)
    for _ in range(3):
        assert env.client.get("/v1/models", headers=env.auth(RH)).status_code == 200
    refused = env.client.get("/v1/models", headers=env.auth(RH))
    problem = _assert_429(refused, "rate-limited", "0.1 requests per second", "burst of 3", max_retry_after=10)
    assert "retry" in problem["detail"].lower()
    assert env.client.get("/v1/models", headers=env.auth("alpha:admin")).status_code == 200, "each key has its own"
    assert env.client.get("/healthz").status_code == 200, "the public routes are not limited"
    for _ in range(3):  # a refused request is not served: it does not reach the dependency or the database
        _assert_429(env.client.post("/v1/models", headers=env.auth(RH), json={}), "rate-limited", max_retry_after=10)


def test_the_rate_limit_can_be_turned_off(make_env: Callable[..., ApiEnv]) -> None:
    env = make_env("sqlite", rate_limit_per_s=0, rate_limit_burst=1)
    for _ in range(5):
        assert env.client.get("/v1/models", headers=env.auth(RH)).status_code == 200
