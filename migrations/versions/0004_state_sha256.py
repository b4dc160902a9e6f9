"""Training-state integrity: the sha256 of the state object last uploaded under the job's lease
(`protection_jobs.state_sha256`; null for rows written before this revision: their stored state is not resumed).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("protection_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("state_sha256", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("protection_jobs", schema=None) as batch_op:
        batch_op.drop_column("state_sha256")
