"""Subjects: what a rights holder registers for protection."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict

CLASS_NOUN_PATTERN = r"^[a-zA-Z][a-zA-Z \-]*$"


class SubjectImageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    position: int
    sha256: str
    size_bytes: int
    width: int
    height: int
    original_filename: str


class SubjectOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    class_noun: str
    status: str
    created_at: datetime
    images: list[SubjectImageOut]
