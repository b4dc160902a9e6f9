"""Job phases: which part of a job its progress describes (`protection_jobs.phase`: "protecting" or "verifying",
null before the job starts), since when (`phase_started_at`) and from which step (`phase_start_step`), so that the
api can estimate the time left.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("protection_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("phase", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("phase_started_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("phase_start_step", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("protection_jobs", schema=None) as batch_op:
        batch_op.drop_column("phase_start_step")
        batch_op.drop_column("phase_started_at")
        batch_op.drop_column("phase")
