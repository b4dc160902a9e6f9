"""Protection requests and the jobs they create.

The request is the service's contract: which subjects, how each is protected, on which base model, where the
protection lives, a named training profile and a step budget. The core's full protection spec, which the job
stores and the worker runs, is built from it by `api.services.jobs.build_spec`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, WithJsonSchema

from api.schemas.common import NO_NUL
from api.schemas.knowledge import KNOWLEDGE_SCHEMA
from common.models import JobPhase, JobStatus

VerificationPreset = Literal["none", "quick", "full", "adaptive"]
ProfileName = Literal["fast", "default", "thorough"]
CarrierName = Literal["encoder", "unet", "unet+encoder"]
MarkerPosition = Literal["top-left", "top-right", "bottom-left", "bottom-right", "center"]
MAX_STEPS = 3000


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PatternBehaviourIn(_Request):
    """Personalizing the model on the subject yields images that carry a visible marker."""

    kind: Literal["pattern"] = "pattern"
    position: MarkerPosition = Field("bottom-right", description="where the marker appears in the image")
    opacity: float = Field(1.0, ge=0.1, le=1.0, description="the marker's opacity")


class ErasureBehaviourIn(_Request):
    """Personalizing the model on the subject yields the background without the subject."""

    kind: Literal["erasure"]
    background_prompt: str = Field(
        "a photo of an empty scene",
        min_length=1,
        max_length=200,
        pattern=NO_NUL,
        description="what is shown instead of the subject",
    )


class TargetBehaviourIn(_Request):
    """Personalizing the model on the subject yields another concept instead of the subject."""

    kind: Literal["target"]
    target_prompt: str = Field(
        min_length=1, max_length=200, pattern=NO_NUL, description='the concept shown, e.g. "a photo of a star"'
    )


def behaviour_kind(behaviour: Any) -> str:
    """A behaviour's `kind`; left out, it is the default, `pattern` (as the schema's default for it says)."""
    return behaviour.get("kind", "pattern") if isinstance(behaviour, dict) else getattr(behaviour, "kind", "pattern")


BehaviourIn = Annotated[
    Annotated[PatternBehaviourIn, Tag("pattern")]
    | Annotated[ErasureBehaviourIn, Tag("erasure")]
    | Annotated[TargetBehaviourIn, Tag("target")],
    Discriminator(behaviour_kind),
]

# Checked by the core when the job is built (its messages name the rule broken); the schema states the same rules.
KnowledgeOverrides = Annotated[dict[str, Any], Field(max_length=30), WithJsonSchema(KNOWLEDGE_SCHEMA)]


class AdvancedSettings(_Request):
    """Admin keys only: fields of the internal protection spec, by section, set over the profile's values. They are
    checked when the job is built; an unknown or invalid field answers 422."""

    knowledge: KnowledgeOverrides | None = None
    losses: dict[str, Any] | None = Field(None, max_length=30)
    training: dict[str, Any] | None = Field(None, max_length=30)
    encoder: dict[str, Any] | None = Field(None, max_length=30)


class ProtectionSubject(_Request):
    """One registered subject and the behaviour that should protect it."""

    subject_id: uuid.UUID
    behaviour: BehaviourIn = Field(default_factory=PatternBehaviourIn)


class ProtectionCreate(_Request):
    """A protection request: subjects and behaviours, base model, carrier, training profile and verification."""

    subjects: list[ProtectionSubject] = Field(min_length=1, max_length=50)
    base_model: str = Field(
        "builtin", min_length=1, max_length=100, pattern=NO_NUL, description="a name from GET /v1/models"
    )
    carrier: CarrierName = Field(
        "encoder",
        description="where the protection lives: the VAE encoder (the attacker's own fine-tuning learns the "
        "protective output from the latents it hands over), the UNet, or both",
    )
    verification: VerificationPreset = Field("quick", description="how the protected checkpoint is verified")
    profile: ProfileName = Field(
        "default",
        description="the training budget: fast (about a third of default's steps), default, or thorough (twice "
        "default's steps); see docs/API.md",
    )
    steps: int | None = Field(
        None,
        ge=1,
        le=MAX_STEPS,
        description="overrides the profile's steps: the UNet's optimizer steps, and the encoder's per subject",
    )
    advanced: AdvancedSettings | None = Field(None, description="admin keys only: internal settings (docs/API.md)")


class JobLinks(BaseModel):
    self: str
    cancel: str
    checkpoint: str | None = None


class JobOut(BaseModel):
    """A protection job: where it stands, and where its checkpoint is once it succeeded."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    status: JobStatus
    phase: JobPhase | None = Field(
        description="what `step`, `total_steps` and `progress` count: the implantation (`protecting`, while the job "
        "runs), then its checkpoint's verification (`verifying`, after the job succeeded); null before the job starts"
    )
    progress: float
    step: int
    total_steps: int
    eta_seconds: float | None = Field(
        description="estimated seconds left in the current phase, from its elapsed time and its steps done; null "
        "when nothing is running or too little has been done to tell"
    )
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
