"""Writing audit events (the caller commits them with its own change)."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy.orm import Session

from common.models import AuditEvent

log = logging.getLogger("persguard.audit")


def record_event(
    session: Session,
    action: str,
    target: Any,
    *,
    tenant_id: uuid.UUID | None,
    actor_key_id: Any = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add an audit event for `action` on `target` (a row with `id` and `__tablename__`)."""
    event = AuditEvent(
        tenant_id=tenant_id,
        actor_key_id=actor_key_id,
        action=action,
        target_type=target.__tablename__,
        target_id=str(target.id),
        details=details or {},
    )
    session.add(event)
    log.info("audit %s %s %s tenant=%s actor=%s", action, event.target_type, event.target_id, tenant_id, actor_key_id)
    return event
