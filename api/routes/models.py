"""`/v1/models`: the base-model registry."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from api.deps import AdminOnly, AnyRole, SessionDep
from api.errors import ProblemError, problem_responses
from api.pagination import PageDep, paginate
from api.schemas.common import Page
from api.schemas.models import ModelCreate, ModelOut
from common.audit import record_event
from common.models import BaseModelEntry, Checkpoint

router = APIRouter(prefix="/v1/models", tags=["models"], responses=problem_responses(401, 403, 422, 429))


@router.get("", response_model=Page[ModelOut])
def list_models(session: SessionDep, principal: AnyRole, page: PageDep) -> dict:
    """Registered base models; `builtin` is always there."""
    stmt = select(BaseModelEntry).order_by(BaseModelEntry.name)
    return paginate(session, stmt, page, ModelOut.model_validate)


@router.post("", status_code=201, response_model=ModelOut, responses=problem_responses(409, 413))
def register_model(body: ModelCreate, session: SessionDep, principal: AdminOnly) -> BaseModelEntry:
    """Register a base model (admins)."""
    if session.scalar(select(BaseModelEntry.id).where(BaseModelEntry.name == body.name)) is not None:
        raise ProblemError(
            409, f"a model named {body.name!r} is already registered; pick another name", kind="conflict"
        )
    if body.checkpoint_id is not None and session.get(Checkpoint, body.checkpoint_id) is None:
        raise ProblemError(
            422, f"no checkpoint {body.checkpoint_id}; GET /v1/checkpoints lists them", kind="validation-error"
        )
    entry = BaseModelEntry(**body.model_dump())
    session.add(entry)
    session.flush()
    record_event(
        session,
        "model.register",
        entry,
        tenant_id=principal.tenant_id,
        actor_key_id=principal.key_id,
        details={"name": entry.name},
    )
    session.commit()
    return entry
