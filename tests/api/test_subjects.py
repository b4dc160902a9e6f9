"""`/v1/subjects`: register (with an Idempotency-Key too), list, get, delete."""

from __future__ import annotations

from sqlalchemy import select

from api.images import validate_uploads
from api.routes.subjects import _limits
from api.services import subjects as service
from api.services.principal import Principal
from common.keys import parse_prefix
from common.models import ApiKey, AuditEvent, Role, Subject, SubjectImage
from tests.api.api_testkit import ApiEnv, image_bytes, upload

RH = "alpha:rights_holder"


def test_register_subject_stores_normalised_images(api: ApiEnv) -> None:
    response = api.client.post(
        "/v1/subjects", headers=api.auth("alpha:rights_holder"), **upload([image_bytes(i) for i in range(3)])
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["name"], body["class_noun"], body["status"]) == ("rex", "dog", "ready")
    assert [image["position"] for image in body["images"]] == [0, 1, 2]
    assert len(api.object_keys(f"subjects/{body['id']}/")) == 3
    assert api.count(SubjectImage) == 3


def test_list_is_paginated_and_scoped_to_the_owner(api: ApiEnv) -> None:
    for seed in range(3):
        api.client.post(
            "/v1/subjects",
            headers=api.auth("alpha:rights_holder"),
            **upload([image_bytes(seed * 10 + i) for i in range(3)], name=f"s{seed}"),
        )
    beta = upload([image_bytes(i) for i in range(3)])
    api.client.post("/v1/subjects", headers=api.auth("beta:rights_holder"), **beta)
    page = api.client.get("/v1/subjects?limit=2&offset=0", headers=api.auth("alpha:rights_holder")).json()
    assert (page["total"], len(page["items"]), page["limit"]) == (3, 2, 2)
    rest = api.client.get("/v1/subjects?limit=2&offset=2", headers=api.auth("alpha:rights_holder")).json()
    assert {i["name"] for i in page["items"] + rest["items"]} == {"s0", "s1", "s2"}
    everything = api.client.get("/v1/subjects", headers=api.auth("alpha:admin")).json()
    assert everything["total"] == 4


def test_delete_removes_images_from_storage_and_hides_the_subject(api: ApiEnv) -> None:
    created = api.client.post(
        "/v1/subjects", headers=api.auth("alpha:rights_holder"), **upload([image_bytes(i) for i in range(3)])
    ).json()
    response = api.client.delete(f"/v1/subjects/{created['id']}", headers=api.auth("alpha:rights_holder"))
    assert response.status_code == 204
    assert api.object_keys(f"subjects/{created['id']}/") == set()
    assert api.count(SubjectImage) == 0
    gone = api.client.get(f"/v1/subjects/{created['id']}", headers=api.auth("alpha:rights_holder"))
    assert gone.status_code == 404 and gone.headers["content-type"] == "application/problem+json"
    assert api.count(AuditEvent.__table__.select().where(AuditEvent.action == "subject.delete").subquery()) == 1


def _upload_with_key(api: ApiEnv, key: str, who: str = RH, seed: int = 0, name: str = "rex"):
    headers = {**api.auth(who), "Idempotency-Key": key}
    return api.client.post("/v1/subjects", headers=headers, **upload([image_bytes(seed + i) for i in range(3)], name))


def test_same_idempotency_key_and_upload_returns_the_first_subject(api: ApiEnv) -> None:
    first = _upload_with_key(api, "up-1")
    second = _upload_with_key(api, "up-1")
    assert first.status_code == 201, first.text
    assert second.status_code == 201, second.text
    assert second.json() == first.json()
    listed = api.client.get("/v1/subjects", headers=api.auth(RH)).json()
    assert [item["id"] for item in listed["items"]] == [first.json()["id"]]
    assert api.count(Subject) == 1 and api.count(SubjectImage) == 3
    assert api.object_keys() == api.object_keys(f"subjects/{first.json()['id']}/")
    assert api.count(AuditEvent.__table__.select().where(AuditEvent.action == "subject.create").subquery()) == 1


def test_same_idempotency_key_with_another_upload_is_a_conflict(api: ApiEnv) -> None:
    first = _upload_with_key(api, "up-1")
    for other in (_upload_with_key(api, "up-1", name="fido"), _upload_with_key(api, "up-1", seed=10)):
        assert other.status_code == 409, other.text
        assert other.headers["content-type"] == "application/problem+json"
        assert other.json()["type"].endswith("/idempotency-conflict") and "new key" in other.json()["detail"]
    assert api.count(Subject) == 1 and api.count(SubjectImage) == 3
    assert api.object_keys() == api.object_keys(f"subjects/{first.json()['id']}/")


def test_idempotency_keys_are_kept_per_tenant(api: ApiEnv) -> None:
    alpha = _upload_with_key(api, "up-1")
    beta = _upload_with_key(api, "up-1", who="beta:rights_holder", seed=10, name="fido")
    assert (alpha.status_code, beta.status_code) == (201, 201), beta.text
    assert beta.json()["id"] != alpha.json()["id"] and beta.json()["name"] == "fido"
    assert api.count(Subject) == 2


def test_an_upload_that_loses_the_race_for_its_key_returns_the_winners_subject(api: ApiEnv) -> None:
    """The second of two concurrent uploads with one key passed the replay check before the first committed: the
    unique (tenant, key) refuses its row, and it answers with the first subject, leaving no images of its own."""
    winner = _upload_with_key(api, "up-1").json()
    files = [(f"img{i}.png", image_bytes(i)) for i in range(3)]
    digest = service.request_hash("rex", "dog", files)
    with api.session_factory() as session:
        key = session.scalar(select(ApiKey).where(ApiKey.prefix == parse_prefix(api.keys[RH])))
        assert key is not None
        principal = Principal(key_id=key.id, tenant_id=key.tenant_id, role=Role(key.role))
        clean = validate_uploads(files, _limits(api.settings))
        subject = service.create_subject(session, api.storage, principal, "rex", "dog", clean, None, "up-1", digest)
        assert str(subject.id) == winner["id"]
    assert api.count(Subject) == 1 and api.object_keys() == api.object_keys(f"subjects/{winner['id']}/")
