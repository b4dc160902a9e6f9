"""Who is calling: what every service needs to know about the caller."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from common.models import Role


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key, its tenant and role."""

    key_id: uuid.UUID
    tenant_id: uuid.UUID
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN
