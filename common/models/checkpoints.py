"""Protected checkpoints and their verification reports."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from common.models.base import Base, CreatedMixin, IdMixin


class Checkpoint(IdMixin, CreatedMixin, Base):
    """A protected model archive in storage; `manifest` lists its files with sizes and sha256."""

    __tablename__ = "checkpoints"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("protection_jobs.id", ondelete="SET NULL"), unique=True)
    parent_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("checkpoints.id", ondelete="SET NULL"))
    storage_key: Mapped[str] = mapped_column(String(300))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)

    reports: Mapped[list[VerificationReport]] = relationship(
        order_by="VerificationReport.created_at.desc()", lazy="selectin", viewonly=True
    )


class VerificationReport(IdMixin, CreatedMixin, Base):
    """What `verify` measured on a checkpoint (PSR, leakage, fidelity; METHOD.md, Measuring it)."""

    __tablename__ = "verification_reports"

    checkpoint_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("checkpoints.id", ondelete="CASCADE"), index=True)
    preset: Mapped[str] = mapped_column(String(20))
    passed: Mapped[bool]
    summary: Mapped[dict[str, Any]] = mapped_column(JSON)
    storage_key: Mapped[str | None] = mapped_column(String(300))
    # How many attempts it took (including the one that wrote it); reports written before 0003 say 1.
    attempts: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
