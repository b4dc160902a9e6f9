"""The fast paths of the hottest endpoints answer exactly as the general ones.

GET /v1/jobs/{id} reads one Core query instead of ORM objects, batched with the other reads of its event-loop turn,
POST /v1/protections builds its answer without loading the new job's relations, and a cached key skips the database:
same bodies, same scoping, same last-used time, and a broker that cannot be reached at startup only costs a warning.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, select, text, update
from sqlalchemy.exc import DBAPIError

from api.deps import Principal
from api.main import warm_up_broker
from api.reads import Reads
from api.services.jobs import get_visible_job, job_out
from common.db import make_engine
from common.jobs.queue import make_celery
from common.keys import parse_prefix
from common.models import ApiKey, Checkpoint, ProtectionJob, Role, utcnow
from common.settings import Settings
from tests.api.api_testkit import ApiEnv, make_subject, protect


def _principal(env: ApiEnv, who: str) -> Principal:
    prefix = parse_prefix(env.keys[who])
    with env.session_factory() as session:
        row = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
        assert row is not None
        return Principal(key_id=row.id, tenant_id=row.tenant_id, role=Role(row.role))


def _sorted_ids(body: dict[str, Any]) -> dict[str, Any]:
    """A job body with its subject ids sorted (their order is not specified)."""
    return {**body, "subject_ids": sorted(body["subject_ids"])}


def _orm_view(env: ApiEnv, who: str, job_id: str) -> dict[str, Any]:
    """The job as the general (ORM) path shows it."""
    with env.session_factory() as session:
        body = job_out(get_visible_job(session, _principal(env, who), uuid.UUID(job_id))).model_dump(mode="json")
    return _sorted_ids(body)


def _get(env: ApiEnv, who: str, job_id: str) -> dict[str, Any]:
    response = env.client.get(f"/v1/jobs/{job_id}", headers=env.auth(who))
    assert response.status_code == 200, response.text
    return _sorted_ids(response.json())


def _add_checkpoint(env: ApiEnv, tenant_id: str, job_id: str) -> str:
    with env.session_factory() as session:
        row = Checkpoint(
            tenant_id=uuid.UUID(tenant_id),
            job_id=uuid.UUID(job_id),
            storage_key="checkpoints/x/model.tar",
            size_bytes=7,
            sha256="0" * 64,
            manifest={"files": []},
        )
        session.add(row)
        session.commit()
        return str(row.id)


def test_status_and_submit_answer_like_the_orm_view(api: ApiEnv) -> None:
    subjects = [make_subject(api, seed=seed, name=f"s{seed}") for seed in range(2)]
    submitted = protect(api, [s["id"] for s in subjects], key="hot-1")
    assert submitted.status_code == 202 and submitted.headers["location"] == f"/v1/jobs/{submitted.json()['id']}"
    job = submitted.json()
    assert sorted(job["subject_ids"]) == sorted(s["id"] for s in subjects) and job["checkpoint_id"] is None
    replay = protect(api, [s["id"] for s in subjects], key="hot-1")  # the ORM view of the same job
    assert replay.status_code == 202 and _sorted_ids(replay.json()) == _sorted_ids(job)

    for who in ("alpha:rights_holder", "alpha:admin", "beta:admin"):
        assert _get(api, who, job["id"]) == _orm_view(api, who, job["id"]) == _sorted_ids(job)

    checkpoint_id = _add_checkpoint(api, job["tenant_id"], job["id"])
    with_checkpoint = _get(api, "alpha:rights_holder", job["id"])
    assert with_checkpoint["checkpoint_id"] == checkpoint_id
    assert with_checkpoint["links"]["checkpoint"] == f"/v1/checkpoints/{checkpoint_id}"
    assert with_checkpoint == _orm_view(api, "alpha:rights_holder", job["id"])

    with api.session_factory() as session:  # the base model's row is gone: its name comes from the spec
        session.execute(
            update(ProtectionJob).where(ProtectionJob.id == uuid.UUID(job["id"])).values(base_model_id=None)
        )
        session.commit()
    orphan = _get(api, "alpha:rights_holder", job["id"])
    assert orphan["base_model"] == "builtin" and orphan == _orm_view(api, "alpha:rights_holder", job["id"])


def test_status_of_a_foreign_or_unknown_job_is_the_same_problem(api: ApiEnv) -> None:
    job = protect(api, [make_subject(api)["id"]]).json()
    for job_id in (job["id"], str(uuid.uuid4())):
        response = api.client.get(f"/v1/jobs/{job_id}", headers=api.auth("beta:rights_holder"))
        assert response.status_code == 404 and response.headers["content-type"] == "application/problem+json"
        assert response.json()["detail"] == f"no job {job_id}; list yours with GET /v1/jobs"
    assert api.client.get(f"/v1/jobs/{job['id']}", headers=api.auth("alpha:model_host")).status_code == 403


def test_last_used_time_is_refreshed_behind_the_auth_cache(make_env) -> None:
    env = make_env("sqlite", auth_cache_ttl_s=0.2)
    headers = env.auth("alpha:rights_holder")
    prefix = parse_prefix(env.keys["alpha:rights_holder"])

    def last_used() -> Any:
        with env.session_factory() as session:
            return session.scalar(select(ApiKey.last_used_at).where(ApiKey.prefix == prefix))

    assert last_used() is None
    assert env.client.get("/v1/models", headers=headers).status_code == 200
    assert last_used() is not None
    stale = utcnow() - timedelta(minutes=5)
    with env.session_factory() as session:
        session.execute(update(ApiKey).where(ApiKey.prefix == prefix).values(last_used_at=stale))
        session.commit()
    time.sleep(0.3)  # past the cache's TTL: the next request reads the key again, and records its use
    assert env.client.get("/v1/models", headers=headers).status_code == 200
    assert last_used() > stale + timedelta(minutes=4)


def test_warming_up_an_unreachable_broker_only_warns(caplog: pytest.LogCaptureFixture) -> None:
    celery = make_celery(Settings(broker_url="redis://127.0.0.1:1/0"), name="persguard-test")
    try:
        with caplog.at_level(logging.WARNING, logger="api.main"):
            warm_up_broker(celery)
    finally:
        celery.close()
    assert "could not warm up the broker connection" in caplog.text


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_batch_of_reads_shares_a_connection_and_answers_each_read_on_its_own(
    backend: str, request: pytest.FixtureRequest
) -> None:
    engine = make_engine(request.getfixturevalue(f"{backend}_database"))
    reads = Reads(engine)

    def number(connection: Connection, n: int) -> tuple[int, int]:
        return connection.execute(text("SELECT :n"), {"n": n}).scalar_one(), id(connection.connection.dbapi_connection)

    def broken(connection: Connection) -> None:
        connection.execute(text("SELECT * FROM no_such_table"))

    async def batch_then_more() -> tuple[list[Any], tuple[int, int]]:
        gone = asyncio.ensure_future(reads.run(number, 0))
        batch = asyncio.gather(reads.run(number, 1), reads.run(broken), reads.run(number, 2), return_exceptions=True)
        await asyncio.sleep(0)
        gone.cancel()  # its request went away while the read thread had it: the others are still answered
        return await batch, await reads.run(number, 3)

    try:
        (one, failed, two), (three, _) = asyncio.run(batch_then_more())
    finally:
        reads.shutdown()
        engine.dispose()
    assert isinstance(failed, DBAPIError)
    assert not isinstance(two, Exception), two  # on Postgres, the aborted transaction did not fail the read after it
    assert (one[0], two[0], three) == (1, 2, 3) and one[1] == two[1]  # one batch, one connection
