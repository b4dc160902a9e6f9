"""Base models a protection can start from."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import NO_NUL


class ModelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")
    source: str = Field(
        min_length=1, max_length=500, pattern=NO_NUL, description="a diffusers folder or single-file checkpoint"
    )
    description: str = Field("", max_length=1000, pattern=NO_NUL)
    checkpoint_id: uuid.UUID | None = Field(None, description="the protected checkpoint this model is")


class ModelOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    source: str
    description: str
    checkpoint_id: uuid.UUID | None
    created_at: datetime
