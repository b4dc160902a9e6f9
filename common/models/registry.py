"""The base-model registry: what a protection may start from."""

from __future__ import annotations

import uuid

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from common.models.base import Base, CreatedMixin, IdMixin

BUILTIN_MODEL_NAME = "builtin"
BUILTIN_MODEL_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")


class BaseModelEntry(IdMixin, CreatedMixin, Base):
    """A registered base model; `source` is what goes into `ProtectionSpec.base_model`."""

    __tablename__ = "base_models"

    name: Mapped[str] = mapped_column(String(100), unique=True)
    source: Mapped[str] = mapped_column(String(500))
    description: Mapped[str] = mapped_column(String(1000), default="")
    # The checkpoint this model was registered from (a plain column: a foreign key would close a cycle
    # base_models -> checkpoints -> protection_jobs -> base_models that SQLite migrations cannot build).
    checkpoint_id: Mapped[uuid.UUID | None]
