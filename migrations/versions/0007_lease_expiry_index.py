"""An index on `protection_jobs.lease_expires_at`: beat looks up the earliest lease expiry to run the reconciler as
soon as a lease runs out (common/jobs/schedule.py), which must not scan every job ever run.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 00:00:01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("protection_jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_protection_jobs_lease_expires_at"), ["lease_expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("protection_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_protection_jobs_lease_expires_at"))
