"""API keys: shown once, stored hashed, found by prefix, revocable; each change audited."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from common.db import make_engine, make_session_factory
from common.keys import authenticate, create_key, create_tenant, revoke_key
from common.models import ApiKey, AuditEvent, Role


@pytest.fixture
def session(database: str):
    engine = make_engine(database)
    with make_session_factory(engine)() as session:
        yield session
    engine.dispose()


def test_created_key_authenticates_and_is_stored_only_as_a_hash(session) -> None:
    create_tenant(session, "acme")
    new = create_key(session, "acme", Role.MODEL_HOST)
    session.commit()
    row = session.scalar(select(ApiKey))
    assert new.secret.startswith(f"pgk_{row.prefix}_")
    assert new.secret not in (row.key_hash, row.prefix)
    found = authenticate(session, new.secret)
    assert found is not None and found.role == Role.MODEL_HOST and found.last_used_at is not None


def test_wrong_or_malformed_keys_do_not_authenticate(session) -> None:
    create_tenant(session, "acme")
    new = create_key(session, "acme", Role.ADMIN)
    session.commit()
    assert authenticate(session, new.secret[:-1] + ("A" if new.secret[-1] != "A" else "B")) is None
    assert authenticate(session, "not-a-key") is None
    assert authenticate(session, "pgk__x") is None


def test_revoked_key_stops_authenticating_and_changes_are_audited(session) -> None:
    create_tenant(session, "acme")
    new = create_key(session, "acme", Role.RIGHTS_HOLDER)
    revoke_key(session, new.row.prefix)
    session.commit()
    assert authenticate(session, new.secret) is None
    actions = session.scalars(select(AuditEvent.action).order_by(AuditEvent.created_at)).all()
    assert actions == ["tenant.create", "key.create", "key.revoke"]


def test_key_for_unknown_tenant_or_role_is_refused(session) -> None:
    with pytest.raises(ValueError, match="no tenant named"):
        create_key(session, "ghost", Role.ADMIN)
    create_tenant(session, "acme")
    with pytest.raises(ValueError):
        create_key(session, "acme", "superuser")
    with pytest.raises(ValueError, match="already exists"):
        create_tenant(session, "acme")
