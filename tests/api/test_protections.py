"""`/v1/protections` and `/v1/jobs`: queueing, idempotency, filters, cancel and retry."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import update

from common.jobs.lease import claim
from common.models import JobStatus, ProtectionJob, utcnow
from tests.api.api_testkit import ApiEnv, make_subject, protect

RH = "alpha:rights_holder"


def test_protection_queues_a_job_with_the_full_spec(api: ApiEnv) -> None:
    subject = make_subject(api)
    response = protect(api, [subject["id"]], verification="full", steps=10)
    assert response.status_code == 202, response.text
    job = response.json()
    assert (job["status"], job["base_model"], job["verification"]) == ("queued", "builtin", "full")
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    spec = job["spec"]
    assert spec["base_model"] == "builtin" and spec["training"]["steps"] == spec["encoder"]["steps"] == 10
    assert (spec["version"], spec["carrier"]) == (2, "encoder")  # the carrier that protects is the default
    assert spec["subjects"][0]["class_noun"] == "dog" and len(spec["subjects"][0]["images"]) == 3
    assert all(key.startswith(f"subjects/{subject['id']}/") for key in spec["subjects"][0]["images"])
    assert [str(j) for j in api.runner.submitted] == [job["id"]]


def test_same_idempotency_key_and_body_returns_the_same_job(api: ApiEnv) -> None:
    subject = make_subject(api)
    first = protect(api, [subject["id"]], key="abc-1")
    second = protect(api, [subject["id"]], key="abc-1")
    assert second.status_code == 202 and second.json()["id"] == first.json()["id"]
    assert api.count(ProtectionJob) == 1 and len(api.runner.submitted) == 1


def test_same_idempotency_key_with_another_body_is_a_conflict(api: ApiEnv) -> None:
    subject = make_subject(api)
    protect(api, [subject["id"]], key="abc-1")
    response = protect(api, [subject["id"]], key="abc-1", verification="none")
    assert response.status_code == 409 and "different request body" in response.json()["detail"]
    assert api.count(ProtectionJob) == 1


def test_an_admin_replaying_an_idempotency_key_for_another_tenants_subjects_gets_the_same_job(api: ApiEnv) -> None:
    subject = make_subject(api)  # alpha's subject, protected by beta's admin
    first = protect(api, [subject["id"]], who="beta:admin", key="admin-1")
    second = protect(api, [subject["id"]], who="beta:admin", key="admin-1")
    assert first.status_code == 202, first.text
    assert second.status_code == 202, second.text
    assert second.json()["id"] == first.json()["id"] and first.json()["tenant_id"] == subject["tenant_id"]
    assert api.count(ProtectionJob) == 1 and len(api.runner.submitted) == 1
    other = protect(api, [subject["id"]], who="beta:admin", key="admin-1", verification="none")
    assert other.status_code == 409 and "different request body" in other.json()["detail"]


def test_unknown_and_foreign_subject_ids_are_refused(api: ApiEnv) -> None:
    foreign = make_subject(api, who="beta:rights_holder")
    unknown = "00000000-0000-4000-8000-00000000abcd"
    for subject_id in (unknown, foreign["id"]):
        response = protect(api, [subject_id])
        assert response.status_code == 422 and f"unknown subject ids: {subject_id}" in response.json()["detail"]
    assert api.count(ProtectionJob) == 0


def test_an_admins_advanced_settings_are_kept_in_the_spec(api: ApiEnv) -> None:
    subject = make_subject(api)
    advanced = {"encoder": {"steps": 50, "target_gain": 2.0}}
    response = protect(api, [subject["id"]], who="alpha:admin", carrier="encoder", advanced=advanced)
    assert response.status_code == 202, response.text
    spec = response.json()["spec"]
    assert spec["carrier"] == "encoder" and (spec["encoder"]["steps"], spec["encoder"]["target_gain"]) == (50, 2.0)
    bad = protect(api, [subject["id"]], carrier="vae")
    assert bad.status_code == 422 and "body.carrier" in bad.json()["detail"]


def test_malformed_json_and_bad_fields_are_clear_problems(api: ApiEnv) -> None:
    headers = {**api.auth(RH), "Content-Type": "application/json"}
    broken = api.client.post("/v1/protections", headers=headers, content=b'{"subjects": [')
    assert broken.status_code == 422 and "not valid JSON" in broken.json()["detail"]
    bad_uuid = protect(api, ["not-a-uuid"])
    assert bad_uuid.status_code == 422 and "body.subjects.0.subject_id" in bad_uuid.json()["detail"]
    unknown_model = protect(api, [make_subject(api)["id"]], base_model="sd-99")
    assert unknown_model.status_code == 422 and "unknown base model 'sd-99'" in unknown_model.json()["detail"]
    assert api.count(ProtectionJob) == 0


def test_jobs_list_filters_by_status_subject_and_model(api: ApiEnv) -> None:
    one, two = make_subject(api, seed=1), make_subject(api, seed=2)
    job_one = protect(api, [one["id"]]).json()
    protect(api, [two["id"]])
    api.client.post(f"/v1/jobs/{job_one['id']}/cancel", headers=api.auth(RH))

    def ids(query: str) -> list[str]:
        response = api.client.get(f"/v1/jobs?{query}", headers=api.auth(RH))
        assert response.status_code == 200, response.text
        return [job["id"] for job in response.json()["items"]]

    assert ids(f"subject_id={one['id']}") == [job_one["id"]]
    assert ids("status=cancelled") == [job_one["id"]]
    assert len(ids("status=queued")) == 1 and len(ids("model=builtin")) == 2 and ids("model=other") == []


def test_cancel_of_a_queued_job_ends_it_and_a_second_cancel_conflicts(api: ApiEnv) -> None:
    job = protect(api, [make_subject(api)["id"]]).json()
    cancelled = api.client.post(f"/v1/jobs/{job['id']}/cancel", headers=api.auth(RH))
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = api.client.post(f"/v1/jobs/{job['id']}/cancel", headers=api.auth(RH))
    assert again.status_code == 409 and "already cancelled" in again.json()["detail"]


def test_admin_retry_requeues_a_cancelled_job_and_refuses_a_queued_one(api: ApiEnv) -> None:
    job = protect(api, [make_subject(api)["id"]]).json()
    refused = api.client.post(f"/v1/jobs/{job['id']}/retry", headers=api.auth("alpha:admin"))
    assert refused.status_code == 409
    api.client.post(f"/v1/jobs/{job['id']}/cancel", headers=api.auth(RH))
    retried = api.client.post(f"/v1/jobs/{job['id']}/retry", headers=api.auth("alpha:admin"))
    assert retried.status_code == 202 and retried.json()["status"] == "queued"
    assert [str(j) for j in api.runner.submitted] == [job["id"], job["id"]]


def test_a_retried_job_holds_no_lease_and_can_be_claimed_at_once(api: ApiEnv) -> None:
    job = protect(api, [make_subject(api)["id"]]).json()
    with api.session_factory() as session:  # failed while a (now dead) runner's lease was still recorded
        session.execute(
            update(ProtectionJob)
            .where(ProtectionJob.id == uuid.UUID(job["id"]))
            .values(
                status=JobStatus.FAILED,
                error="boom",
                lease_owner="dead:1:abcd",
                lease_expires_at=utcnow() + timedelta(minutes=10),
                heartbeat_at=utcnow(),
            )
        )
        session.commit()
    retried = api.client.post(f"/v1/jobs/{job['id']}/retry", headers=api.auth("alpha:admin"))
    assert retried.status_code == 202 and retried.json()["status"] == "queued"
    with api.session_factory() as session:
        row = session.get_one(ProtectionJob, uuid.UUID(job["id"]))
        assert (row.lease_owner, row.lease_expires_at, row.heartbeat_at) == (None, None, None)
    lease = claim(api.session_factory, uuid.UUID(job["id"]), from_status=JobStatus.QUEUED, ttl_s=60)
    assert lease is not None, "a worker takes the retried job at once"


def test_deleting_a_subject_cancels_its_queued_jobs(api: ApiEnv) -> None:
    subject = make_subject(api)
    job = protect(api, [subject["id"]]).json()
    api.client.delete(f"/v1/subjects/{subject['id']}", headers=api.auth(RH))
    after = api.client.get(f"/v1/jobs/{job['id']}", headers=api.auth(RH)).json()
    assert after["status"] == "cancelled" and after["error"] == f"subject {subject['id']} was deleted"


def test_a_rights_holder_may_ask_for_the_adaptive_verification(api: ApiEnv) -> None:
    response = protect(api, [make_subject(api)["id"]], verification="adaptive")
    assert response.status_code == 202, response.text
    assert response.json()["verification"] == "adaptive"
