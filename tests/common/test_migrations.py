"""Alembic migrations: upgrade from empty, downgrade, and agreement with the SQLAlchemy models."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError

from common.db import make_engine
from common.migrate import downgrade, upgrade
from common.models import BUILTIN_MODEL_NAME, Base, BaseModelEntry


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def _diff(url: str) -> list:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a new SQLite file, or the shared Postgres database taken down to base."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.sqlite3'}"
        return
    url = request.getfixturevalue("postgres_migrated")
    downgrade(url)
    yield url
    upgrade(url)  # leave the shared database as the other tests expect it


def test_upgrade_from_empty_creates_every_model_table(empty_url: str) -> None:
    assert _tables(empty_url) == set()
    upgrade(empty_url)
    assert _tables(empty_url) == set(Base.metadata.tables)


def test_migrated_schema_matches_the_models(empty_url: str) -> None:
    upgrade(empty_url)
    assert _diff(empty_url) == []


def test_upgrade_registers_the_builtin_model(empty_url: str) -> None:
    upgrade(empty_url)
    engine = make_engine(empty_url)
    with engine.connect() as connection:
        names = connection.scalars(select(BaseModelEntry.name)).all()
    engine.dispose()
    assert names == [BUILTIN_MODEL_NAME]


def test_downgrade_removes_everything_and_upgrade_works_again(empty_url: str) -> None:
    upgrade(empty_url)
    downgrade(empty_url)
    assert _tables(empty_url) == set()
    upgrade(empty_url)
    assert _tables(empty_url) == set(Base.metadata.tables)


def _columns(url: str, table: str) -> set[str]:
    engine = make_engine(url)
    try:
        return {column["name"] for column in inspect(engine).get_columns(table)}
    finally:
        engine.dispose()


def test_0003_adds_the_verification_attempt_counts_to_existing_rows_and_takes_them_away_again(empty_url: str) -> None:
    upgrade(empty_url, "0002")
    now = datetime.now(UTC)
    tenant, job, checkpoint, report = (str(uuid.uuid4()) for _ in range(4))
    engine = make_engine(empty_url)
    with engine.begin() as connection:  # rows as a 0002 database holds them
        connection.execute(
            text("INSERT INTO tenants (id, name, created_at) VALUES (:id, 'acme', :now)"), {"id": tenant, "now": now}
        )
        connection.execute(
            text(
                "INSERT INTO protection_jobs (id, tenant_id, spec, verification_preset, status, progress, step, "
                "total_steps, losses, attempts, cancel_requested, updated_at, created_at) VALUES (:id, :tenant, '{}', "
                "'quick', 'succeeded', 1.0, 3, 3, '{}', 1, false, :now, :now)"
            ),
            {"id": job, "tenant": tenant, "now": now},
        )
        connection.execute(
            text(
                "INSERT INTO checkpoints (id, tenant_id, job_id, storage_key, size_bytes, sha256, manifest, "
                "created_at) VALUES (:id, :tenant, :job, 'checkpoints/x/model.tar', 1, 'ab', '{}', :now)"
            ),
            {"id": checkpoint, "tenant": tenant, "job": job, "now": now},
        )
        connection.execute(
            text(
                "INSERT INTO verification_reports (id, checkpoint_id, preset, passed, summary, created_at) "
                "VALUES (:id, :checkpoint, 'quick', true, '{}', :now)"
            ),
            {"id": report, "checkpoint": checkpoint, "now": now},
        )
    engine.dispose()
    assert "verify_attempts" not in _columns(empty_url, "protection_jobs")

    upgrade(empty_url, "0003")
    engine = make_engine(empty_url)
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT verify_attempts FROM protection_jobs")) == 0
        assert connection.scalar(text("SELECT attempts FROM verification_reports")) == 1
    engine.dispose()

    downgrade(empty_url, "0002")
    assert "verify_attempts" not in _columns(empty_url, "protection_jobs")
    assert "attempts" not in _columns(empty_url, "verification_reports")
    engine = make_engine(empty_url)
    with engine.connect() as connection:  # the rows survive the round trip (SQLite rebuilds the tables)
        assert connection.scalar(text("SELECT count(*) FROM verification_reports")) == 1
        assert connection.scalar(text("SELECT status FROM protection_jobs")) == "succeeded"
    engine.dispose()
    downgrade(empty_url)  # leave no rows behind in the shared Postgres database


def test_0004_adds_the_training_state_sha256_to_existing_jobs_and_takes_it_away_again(empty_url: str) -> None:
    upgrade(empty_url, "0003")
    now = datetime.now(UTC)
    tenant, job = str(uuid.uuid4()), str(uuid.uuid4())
    engine = make_engine(empty_url)
    with engine.begin() as connection:  # a failed job whose state of step 40 is in storage, as 0003 records it
        connection.execute(
            text("INSERT INTO tenants (id, name, created_at) VALUES (:id, 'acme', :now)"), {"id": tenant, "now": now}
        )
        connection.execute(
            text(
                "INSERT INTO protection_jobs (id, tenant_id, spec, verification_preset, status, progress, step, "
                "total_steps, losses, attempts, cancel_requested, state_step, updated_at, created_at) VALUES (:id, "
                ":tenant, '{}', 'quick', 'failed', 0.4, 40, 100, '{}', 1, false, 40, :now, :now)"
            ),
            {"id": job, "tenant": tenant, "now": now},
        )
    engine.dispose()
    assert "state_sha256" not in _columns(empty_url, "protection_jobs")

    upgrade(empty_url, "0004")
    engine = make_engine(empty_url)
    with engine.connect() as connection:  # no sha256 was recorded: that state is not trusted on restore
        assert connection.execute(text("SELECT state_step, state_sha256 FROM protection_jobs")).one() == (40, None)
    engine.dispose()

    downgrade(empty_url, "0003")
    assert "state_sha256" not in _columns(empty_url, "protection_jobs")
    engine = make_engine(empty_url)
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT status FROM protection_jobs")) == "failed"
    engine.dispose()
    downgrade(empty_url)  # leave no rows behind in the shared Postgres database


def test_0005_adds_the_job_phase_to_existing_jobs_and_takes_it_away_again(empty_url: str) -> None:
    upgrade(empty_url, "0004")
    now = datetime.now(UTC)
    tenant, job = str(uuid.uuid4()), str(uuid.uuid4())
    engine = make_engine(empty_url)
    with engine.begin() as connection:  # a job running at step 40 of 100, as 0004 records it
        connection.execute(
            text("INSERT INTO tenants (id, name, created_at) VALUES (:id, 'acme', :now)"), {"id": tenant, "now": now}
        )
        connection.execute(
            text(
                "INSERT INTO protection_jobs (id, tenant_id, spec, verification_preset, status, progress, step, "
                "total_steps, losses, attempts, cancel_requested, updated_at, created_at) VALUES (:id, :tenant, '{}', "
                "'quick', 'running', 0.4, 40, 100, '{}', 1, false, :now, :now)"
            ),
            {"id": job, "tenant": tenant, "now": now},
        )
    engine.dispose()

    upgrade(empty_url, "0005")
    engine = make_engine(empty_url)
    with engine.connect() as connection:  # no phase recorded: the api estimates no time left for it
        row = connection.execute(text("SELECT phase, phase_started_at, phase_start_step, step FROM protection_jobs"))
        assert row.one() == (None, None, 0, 40)
    engine.dispose()

    downgrade(empty_url, "0004")
    assert not {"phase", "phase_started_at", "phase_start_step"} & _columns(empty_url, "protection_jobs")
    engine = make_engine(empty_url)
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT step FROM protection_jobs")) == 40
    engine.dispose()
    downgrade(empty_url)  # leave no rows behind in the shared Postgres database


def test_0008_adds_the_subjects_idempotency_key_unique_per_tenant_and_takes_it_away_again(empty_url: str) -> None:
    upgrade(empty_url, "0007")
    now = datetime.now(UTC)
    tenant = str(uuid.uuid4())
    insert = text(
        "INSERT INTO subjects (id, tenant_id, name, class_noun, status, created_at) "
        "VALUES (:id, :tenant, 'rex', 'dog', 'ready', :now)"
    )
    engine = make_engine(empty_url)
    with engine.begin() as connection:  # two subjects of one tenant, as 0007 records them
        connection.execute(
            text("INSERT INTO tenants (id, name, created_at) VALUES (:id, 'acme', :now)"), {"id": tenant, "now": now}
        )
        for _ in range(2):
            connection.execute(insert, {"id": str(uuid.uuid4()), "tenant": tenant, "now": now})
    engine.dispose()
    assert not {"idempotency_key", "request_hash"} & _columns(empty_url, "subjects")

    upgrade(empty_url, "0008")
    engine = make_engine(empty_url)
    keyed = text(
        "INSERT INTO subjects (id, tenant_id, name, class_noun, status, idempotency_key, request_hash, created_at) "
        "VALUES (:id, :tenant, 'rex', 'dog', 'ready', 'k', 'ab', :now)"
    )
    with engine.connect() as connection:  # the earlier rows have no key, and null keys do not collide
        rows = connection.execute(text("SELECT idempotency_key, request_hash FROM subjects")).all()
        assert rows == [(None, None)] * 2
    with engine.begin() as connection:
        connection.execute(keyed, {"id": str(uuid.uuid4()), "tenant": tenant, "now": now})
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(keyed, {"id": str(uuid.uuid4()), "tenant": tenant, "now": now})
    engine.dispose()

    downgrade(empty_url, "0007")
    assert not {"idempotency_key", "request_hash"} & _columns(empty_url, "subjects")
    engine = make_engine(empty_url)
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT count(*) FROM subjects")) == 3
    engine.dispose()
    downgrade(empty_url)  # leave no rows behind in the shared Postgres database
