"""Alembic migrations: upgrade from empty, downgrade, and agreement with the SQLAlchemy models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select

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
