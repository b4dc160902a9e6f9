"""`/v1/models`, `/healthz`, `/readyz`, `/metrics`, and problem+json for unknown routes."""

from __future__ import annotations

import logging

from common.storage import StorageError
from tests.api.api_testkit import ApiEnv, make_subject, protect

ADMIN = "alpha:admin"


def test_builtin_model_is_listed_and_admin_can_register_another(api: ApiEnv) -> None:
    listed = api.client.get("/v1/models", headers=api.auth("alpha:model_host")).json()
    assert [m["name"] for m in listed["items"]] == ["builtin"]
    created = api.client.post("/v1/models", headers=api.auth(ADMIN), json={"name": "sd15", "source": "/m/sd15"})
    assert created.status_code == 201 and created.json()["source"] == "/m/sd15"
    duplicate = api.client.post("/v1/models", headers=api.auth(ADMIN), json={"name": "sd15", "source": "/m/x"})
    assert duplicate.status_code == 409 and "already registered" in duplicate.json()["detail"]
    job = protect(api, [make_subject(api)["id"]], base_model="sd15").json()
    assert job["spec"]["base_model"] == "/m/sd15" and job["base_model"] == "sd15"


def test_healthz_and_readyz_report_ok(api: ApiEnv) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    ready = api.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["database"] == "ok" and ready.json()["checks"]["storage"] == "ok"


def test_readyz_is_a_503_problem_when_the_broker_is_down(make_env) -> None:
    api = make_env("sqlite", broker_url="redis://127.0.0.1:1/0")
    response = api.client.get("/readyz")
    assert response.status_code == 503 and response.headers["content-type"] == "application/problem+json"
    assert response.json()["checks"] == {"broker": "unavailable"}


class _BrokenStorage:
    def check(self) -> None:
        raise StorageError("bucket s3://secret-bucket at 10.0.0.7: AccessDenied for key AKIASECRET")


def test_readyz_names_only_the_dependency_that_is_down_and_logs_why(make_env, caplog) -> None:
    api = make_env("sqlite")
    api.client.app.state.storage = _BrokenStorage()
    with caplog.at_level(logging.WARNING, logger="api.routes.health"):
        response = api.client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["checks"] == {"storage": "unavailable"} and body["detail"] == "not ready: storage unavailable"
    for secret in ("secret-bucket", "10.0.0.7", "AKIASECRET", "StorageError"):
        assert secret not in response.text
    assert "AKIASECRET" in caplog.text, "the exception is logged for the operator"


def test_readyz_pings_a_live_broker(make_env) -> None:
    api = make_env("sqlite", broker_url="redis://127.0.0.1:6379/0")
    response = api.client.get("/readyz")
    assert response.status_code == 200, f"is Redis running on 127.0.0.1:6379? {response.text}"
    assert response.json()["checks"]["broker"] == "ok"


def test_metrics_count_requests_and_jobs_by_state(api: ApiEnv) -> None:
    protect(api, [make_subject(api)["id"]])
    api.client.get("/healthz")
    text = api.client.get("/metrics", headers=api.auth(ADMIN)).text
    assert 'persguard_http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in text
    assert 'persguard_http_request_duration_seconds_count{method="POST",route="/v1/protections"} 1.0' in text
    assert 'persguard_jobs{state="queued"} 1.0' in text and "persguard_queue_depth 1.0" in text


def test_metrics_need_an_admin_key(make_env) -> None:
    api = make_env("sqlite")
    protect(api, [make_subject(api)["id"]])
    anonymous = api.client.get("/metrics")
    assert anonymous.status_code == 401 and "persguard_jobs" not in anonymous.text
    for who in ("beta:rights_holder", "beta:model_host"):
        refused = api.client.get("/metrics", headers=api.auth(who))
        assert refused.status_code == 403 and "persguard_jobs" not in refused.text
    assert 'persguard_jobs{state="queued"} 1.0' in api.client.get("/metrics", headers=api.auth("beta:admin")).text


def test_unknown_route_and_method_are_problems(api: ApiEnv) -> None:
    missing = api.client.get("/v1/nothing", headers=api.auth(ADMIN))  # without a key: 401 (test_request_guard.py)
    assert missing.status_code == 404 and missing.json()["type"].endswith("/not-found")
    wrong_method = api.client.put("/v1/models", headers=api.auth(ADMIN))
    assert wrong_method.status_code == 405 and "PUT is not allowed" in wrong_method.json()["detail"]
