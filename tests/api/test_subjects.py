"""`/v1/subjects`: register, list, get, delete."""

from __future__ import annotations

from common.models import AuditEvent, SubjectImage
from tests.api.api_testkit import ApiEnv, image_bytes, upload


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
