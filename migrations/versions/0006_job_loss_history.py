"""Loss history: the implantation's losses over its steps, thinned to a few hundred points, for the dashboard's
loss plot (`protection_jobs.loss_history`, JSON, null until the first progress of the job).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08 00:00:01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("protection_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("loss_history", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("protection_jobs", schema=None) as batch_op:
        batch_op.drop_column("loss_history")
