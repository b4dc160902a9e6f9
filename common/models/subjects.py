"""Protected subjects and their images."""

from __future__ import annotations

import enum
import uuid

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from common.models.base import Base, CreatedMixin, IdMixin


class SubjectStatus(enum.StrEnum):
    READY = "ready"
    DELETED = "deleted"


class Subject(IdMixin, CreatedMixin, Base):
    """One person, pet, object or artwork a rights holder registered (METHOD.md, Roles)."""

    __tablename__ = "subjects"
    __table_args__ = (UniqueConstraint("tenant_id", "idempotency_key", name="uq_subjects_idempotency"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    owner_key_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))
    name: Mapped[str] = mapped_column(String(100))
    class_noun: Mapped[str] = mapped_column(String(50))
    status: Mapped[str] = mapped_column(String(16), default=SubjectStatus.READY)
    # The Idempotency-Key of the upload that made it (kept per tenant) and the digest of that upload's form and files.
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str | None] = mapped_column(String(64))

    images: Mapped[list[SubjectImage]] = relationship(
        back_populates="subject", cascade="all, delete-orphan", order_by="SubjectImage.position"
    )


class SubjectImage(IdMixin, Base):
    """One normalised image (EXIF orientation applied, metadata stripped, stored as PNG)."""

    __tablename__ = "subject_images"
    __table_args__ = (UniqueConstraint("subject_id", "sha256", name="uq_subject_images_subject_sha256"),)

    subject_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("subjects.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    storage_key: Mapped[str] = mapped_column(String(300))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    original_filename: Mapped[str] = mapped_column(String(255))

    subject: Mapped[Subject] = relationship(back_populates="images")
