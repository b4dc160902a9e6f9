"""Protection requests and the jobs they create."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from common.models import JobStatus
from persguard_core.spec import (
    DEFAULT_CARRIER,
    Behaviour,
    Carrier,
    EncoderTraining,
    Knowledge,
    LossWeights,
    PatternBehaviour,
    Training,
)

VerificationPreset = Literal["none", "quick", "full"]


class ProtectionSubject(BaseModel):
    """One registered subject and the behaviour that should protect it."""

    model_config = ConfigDict(extra="forbid")

    subject_id: uuid.UUID
    behaviour: Behaviour = Field(default_factory=PatternBehaviour)


class ProtectionCreate(BaseModel):
    """A protection request: subjects, behaviours, base model, training settings and verification preset."""

    model_config = ConfigDict(extra="forbid")

    subjects: list[ProtectionSubject] = Field(min_length=1, max_length=50)
    base_model: str = Field("builtin", min_length=1, max_length=100, description="a name from GET /v1/models")
    verification: VerificationPreset = "quick"
    knowledge: Knowledge = Field(default_factory=Knowledge)
    losses: LossWeights = Field(default_factory=LossWeights)
    training: Training = Field(default_factory=Training)
    carrier: Carrier = DEFAULT_CARRIER
    encoder: EncoderTraining = Field(default_factory=EncoderTraining)


class JobLinks(BaseModel):
    self: str
    cancel: str
    checkpoint: str | None = None


class JobOut(BaseModel):
    """A protection job: where it stands, and where its checkpoint is once it succeeded."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    status: JobStatus
    progress: float
    step: int
    total_steps: int
    losses: dict[str, float]
    error: str | None
    attempts: int
    cancel_requested: bool
    base_model: str
    verification: VerificationPreset
    subject_ids: list[uuid.UUID]
    checkpoint_id: uuid.UUID | None
    spec: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    links: JobLinks
