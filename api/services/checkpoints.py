"""Which checkpoints a caller may see: all for model hosts and admins, their tenant's for rights holders."""

from __future__ import annotations

import uuid

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from api.services.errors import NotFound
from api.services.principal import Principal
from common.models import Checkpoint, Role


def visible_checkpoints(principal: Principal) -> Select[tuple[Checkpoint]]:
    stmt = select(Checkpoint)
    if principal.role is Role.RIGHTS_HOLDER:
        stmt = stmt.where(Checkpoint.tenant_id == principal.tenant_id)
    return stmt


def get_visible_checkpoint(session: Session, principal: Principal, checkpoint_id: uuid.UUID) -> Checkpoint:
    """The checkpoint, or NotFound if it does not exist or the caller may not see it."""
    checkpoint = session.scalar(visible_checkpoints(principal).where(Checkpoint.id == checkpoint_id))
    if checkpoint is None:
        raise NotFound(f"no checkpoint {checkpoint_id}; list them with GET /v1/checkpoints")
    return checkpoint
