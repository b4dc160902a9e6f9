"""Protected checkpoints and their verification summaries."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class VerificationSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    preset: str
    passed: bool
    summary: dict[str, Any]
    attempts: int = Field(description="attempts the verification took, including the one that wrote this report")
    created_at: datetime


class CheckpointLinks(BaseModel):
    self: str
    download: str


class CheckpointOut(BaseModel):
    """A protected model archive: its size, sha256, file manifest and latest verification."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    job_id: uuid.UUID | None
    parent_id: uuid.UUID | None
    size_bytes: int
    sha256: str
    manifest: dict[str, Any]
    created_at: datetime
    verification: VerificationSummary | None
    links: CheckpointLinks
