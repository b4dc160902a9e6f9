"""Tenants and their API keys."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from common.models.base import Base, CreatedMixin, IdMixin


class Role(enum.StrEnum):
    """What a key may do: rights holders own subjects, model hosts fetch checkpoints, admins do everything."""

    RIGHTS_HOLDER = "rights_holder"
    MODEL_HOST = "model_host"
    ADMIN = "admin"


class Tenant(IdMixin, CreatedMixin, Base):
    """An organisation; every subject, job and key belongs to one."""

    __tablename__ = "tenants"

    name: Mapped[str] = mapped_column(String(100), unique=True)
    keys: Mapped[list[ApiKey]] = relationship(back_populates="tenant")


class ApiKey(IdMixin, CreatedMixin, Base):
    """An API key: only its sha256 is stored; `prefix` (shown in the key) finds the row."""

    __tablename__ = "api_keys"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(20))
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]

    tenant: Mapped[Tenant] = relationship(back_populates="keys")
