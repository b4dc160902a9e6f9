"""Verification attempts: counted on the job (`verify_attempts`, capped by VERIFY_MAX_ATTEMPTS) and recorded on
its report (`attempts`; reports written before this revision say 1).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("protection_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("verify_attempts", sa.Integer(), server_default="0", nullable=False))
    with op.batch_alter_table("verification_reports", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attempts", sa.Integer(), server_default="1", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("verification_reports", schema=None) as batch_op:
        batch_op.drop_column("attempts")
    with op.batch_alter_table("protection_jobs", schema=None) as batch_op:
        batch_op.drop_column("verify_attempts")
