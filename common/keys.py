"""Tenants and API keys: creation (key shown once), lookup by prefix, revocation."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from common.audit import record_event
from common.models import ApiKey, Role, Tenant, utcnow

KEY_PREFIX = "pgk"
MAX_KEY_LENGTH = 200  # issued keys are 60 characters: `pgk_` + 12 hex + `_` + 43 url-safe base64
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class NewKey:
    """A freshly created key: `secret` is the only copy of the full key."""

    row: ApiKey
    secret: str


def hash_key(key: str) -> str:
    """sha256 of a full key; keys carry 256 random bits, so a fast hash suffices."""
    return hashlib.sha256(key.encode()).hexdigest()


def create_tenant(session: Session, name: str) -> Tenant:
    """Add a tenant; raises ValueError if the name is taken."""
    if session.scalar(select(Tenant).where(Tenant.name == name)) is not None:
        raise ValueError(f"tenant {name!r} already exists")
    tenant = Tenant(name=name)
    session.add(tenant)
    session.flush()
    record_event(session, "tenant.create", tenant, tenant_id=tenant.id, details={"name": name})
    return tenant


def create_key(session: Session, tenant_name: str, role: Role | str, actor_key_id: object = None) -> NewKey:
    """Add a key for a tenant; the returned secret is `pgk_<prefix>_<random>` and is never stored."""
    tenant = session.scalar(select(Tenant).where(Tenant.name == tenant_name))
    if tenant is None:
        raise ValueError(f"no tenant named {tenant_name!r}; create it first")
    role = Role(role)
    prefix = secrets.token_hex(6)
    secret = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    row = ApiKey(tenant_id=tenant.id, prefix=prefix, key_hash=hash_key(secret), role=role)
    session.add(row)
    session.flush()
    record_event(session, "key.create", row, tenant_id=tenant.id, actor_key_id=actor_key_id, details={"role": role})
    return NewKey(row=row, secret=secret)


def revoke_key(session: Session, prefix: str) -> ApiKey:
    """Mark a key revoked; it stops authenticating at once."""
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if row is None:
        raise ValueError(f"no key with prefix {prefix!r}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        record_event(session, "key.revoke", row, tenant_id=row.tenant_id)
    return row


def parse_prefix(key: str) -> str | None:
    """The lookup prefix of a well-formed key, else None."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[1]:
        return None
    return parts[1]


def is_well_formed(key: str) -> bool:
    """Whether `key` has the shape of an issued key, `pgk_<prefix>_<secret>`, both parts non-empty (no lookup)."""
    prefix = parse_prefix(key)
    return prefix is not None and len(key) <= MAX_KEY_LENGTH and len(key) > len(KEY_PREFIX) + len(prefix) + 2


def authenticate(session: Session, key: str) -> ApiKey | None:
    """The live key row matching `key`, or None; refreshes `last_used_at` at most once a minute."""
    prefix = parse_prefix(key)
    if prefix is None:
        return None
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.key_hash, hash_key(key)):
        return None
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
        row.last_used_at = now
        session.commit()
    return row
