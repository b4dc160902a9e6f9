"""Authorization matrix: every endpoint x role x own / other tenant.

Rights holders see only their tenant's subjects, jobs and checkpoints; model hosts see checkpoints (all
tenants') and no subjects or jobs; admins see everything. Another tenant's objects are 404 (their existence
is not revealed), a role that may not call an endpoint gets 403, a missing or revoked key 401.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest

from common.keys import revoke_key
from common.models import ApiKey, Checkpoint
from tests.api.api_testkit import ApiEnv, make_subject, protect

OWN, OTHER = "alpha", "beta"


def _checkpoint(env: ApiEnv, tenant_id: str, job_id: str) -> str:
    stored = env.storage.put_bytes(f"checkpoints/{uuid.uuid4()}/model.tar", b"archive")
    with env.session_factory() as session:
        row = Checkpoint(
            tenant_id=uuid.UUID(tenant_id),
            job_id=uuid.UUID(job_id),
            storage_key=stored.key,
            size_bytes=stored.size,
            sha256=stored.sha256,
            manifest={"files": []},
        )
        session.add(row)
        session.commit()
        return str(row.id)


@pytest.fixture
def world(make_env: Callable[..., ApiEnv]) -> tuple[ApiEnv, dict[str, dict[str, str]]]:
    """Both tenants own a subject, a queued job and a checkpoint."""
    env = make_env("sqlite")
    ids: dict[str, dict[str, str]] = {}
    for seed, tenant in enumerate((OWN, OTHER)):
        subject = make_subject(env, who=f"{tenant}:rights_holder", seed=seed)
        job = protect(env, [subject["id"]], who=f"{tenant}:rights_holder").json()
        ids[tenant] = {"S": subject["id"], "J": job["id"], "C": _checkpoint(env, subject["tenant_id"], job["id"])}
    return env, ids


# (method, path, expected for rights_holder, model_host, admin) as (own tenant, other tenant)
MATRIX = [
    ("GET", "/v1/subjects/{S}", {"rights_holder": (200, 404), "model_host": (403, 403), "admin": (200, 200)}),
    ("DELETE", "/v1/subjects/{S}", {"rights_holder": (204, 404), "model_host": (403, 403), "admin": (204, 204)}),
    ("GET", "/v1/jobs/{J}", {"rights_holder": (200, 404), "model_host": (403, 403), "admin": (200, 200)}),
    ("POST", "/v1/jobs/{J}/cancel", {"rights_holder": (200, 404), "model_host": (403, 403), "admin": (200, 200)}),
    ("POST", "/v1/jobs/{J}/retry", {"rights_holder": (403, 403), "model_host": (403, 403), "admin": (409, 409)}),
    ("GET", "/v1/checkpoints/{C}", {"rights_holder": (200, 404), "model_host": (200, 200), "admin": (200, 200)}),
    (
        "GET",
        "/v1/checkpoints/{C}/download",
        {"rights_holder": (307, 404), "model_host": (307, 307), "admin": (307, 307)},
    ),
    ("POST", "/v1/protections", {"rights_holder": (202, 422), "model_host": (403, 403), "admin": (202, 202)}),
]
CASES = [
    pytest.param(method, path, role, target, codes[role][index], id=f"{method} {path} {role} {target}")
    for method, path, codes in MATRIX
    for role in ("rights_holder", "model_host", "admin")
    for index, target in enumerate(("own", "other"))
]


@pytest.mark.parametrize(("method", "path", "role", "target", "expected"), CASES)
def test_object_endpoints(world, method: str, path: str, role: str, target: str, expected: int) -> None:
    env, ids = world
    objects = ids[OWN if target == "own" else OTHER]
    kwargs = {"json": {"subjects": [{"subject_id": objects["S"]}]}} if path == "/v1/protections" else {}
    response = env.client.request(method, path.format(**objects), headers=env.auth(f"{OWN}:{role}"), **kwargs)
    assert response.status_code == expected, response.text
    if expected >= 400:
        assert response.headers["content-type"] == "application/problem+json"


# list endpoint -> items visible to rights_holder, model_host, admin of the OWN tenant (None = 403)
LISTS = {
    "/v1/subjects": {"rights_holder": 1, "model_host": None, "admin": 2},
    "/v1/jobs": {"rights_holder": 1, "model_host": None, "admin": 2},
    "/v1/checkpoints": {"rights_holder": 1, "model_host": 2, "admin": 2},
    "/v1/models": {"rights_holder": 1, "model_host": 1, "admin": 1},
}


@pytest.mark.parametrize("path", list(LISTS))
@pytest.mark.parametrize("role", ["rights_holder", "model_host", "admin"])
def test_list_endpoints_are_scoped(world, path: str, role: str) -> None:
    env, _ = world
    response = env.client.get(path, headers=env.auth(f"{OWN}:{role}"))
    expected = LISTS[path][role]
    if expected is None:
        assert response.status_code == 403 and role in response.json()["detail"]
    else:
        assert response.status_code == 200 and response.json()["total"] == expected


@pytest.mark.parametrize(("role", "expected"), [("rights_holder", 403), ("model_host", 403), ("admin", 201)])
def test_only_admins_register_models(world, role: str, expected: int) -> None:
    env, _ = world
    body = {"name": f"m-{role}", "source": "/models/x"}
    assert env.client.post("/v1/models", headers=env.auth(f"{OWN}:{role}"), json=body).status_code == expected


def test_only_rights_holders_and_admins_register_subjects(world) -> None:
    env, _ = world
    response = env.client.post(
        "/v1/subjects",
        headers=env.auth(f"{OWN}:model_host"),
        data={"name": "x", "class_noun": "dog"},
        files={"images": ("a.png", b"x")},
    )
    assert response.status_code == 403


ALL_ENDPOINTS = [
    ("GET", "/v1/subjects"),
    ("POST", "/v1/subjects"),
    ("GET", "/v1/subjects/{S}"),
    ("DELETE", "/v1/subjects/{S}"),
    ("POST", "/v1/protections"),
    ("GET", "/v1/jobs"),
    ("GET", "/v1/jobs/{J}"),
    ("POST", "/v1/jobs/{J}/cancel"),
    ("POST", "/v1/jobs/{J}/retry"),
    ("GET", "/v1/checkpoints"),
    ("GET", "/v1/checkpoints/{C}"),
    ("GET", "/v1/checkpoints/{C}/download"),
    ("GET", "/v1/models"),
    ("POST", "/v1/models"),
]


@pytest.mark.parametrize(("method", "path"), ALL_ENDPOINTS)
def test_every_endpoint_needs_a_live_key(world, method: str, path: str) -> None:
    env, ids = world
    url = path.format(**ids[OWN])
    files = {"files": {"images": ("a.png", b"x")}} if path == "/v1/subjects" and method == "POST" else {}
    missing = env.client.request(method, url, **files)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    wrong = env.client.request(method, url, headers={"Authorization": "Bearer pgk_nothing_here"}, **files)
    assert wrong.status_code == 401 and "unknown or revoked" in wrong.json()["detail"]


def test_revoked_key_is_refused_at_once_without_the_auth_cache(make_env: Callable[..., ApiEnv]) -> None:
    env = make_env("sqlite", auth_cache_ttl_s=0)
    headers = env.auth(f"{OWN}:admin")
    assert env.client.get("/v1/models", headers=headers).status_code == 200
    with env.session_factory() as session:
        prefix = session.query(ApiKey.prefix).filter(ApiKey.role == "admin").first()[0]
        revoked = revoke_key(session, prefix)
        session.commit()
    key = next(k for k in env.keys.values() if k.startswith(f"pgk_{revoked.prefix}_"))
    assert env.client.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 401


def test_auth_cache_keeps_a_revoked_key_only_for_its_ttl(make_env: Callable[..., ApiEnv]) -> None:
    env = make_env("sqlite", auth_cache_ttl_s=0.5)
    headers = env.auth(f"{OWN}:admin")
    assert env.client.get("/v1/models", headers=headers).status_code == 200
    with env.session_factory() as session:
        prefix = headers["Authorization"].split("_")[1]
        revoke_key(session, prefix)
        session.commit()
    assert env.client.get("/v1/models", headers=headers).status_code == 200, "cached for up to the TTL"
    time.sleep(0.6)
    assert env.client.get("/v1/models", headers=headers).status_code == 401
