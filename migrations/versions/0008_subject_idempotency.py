"""Idempotent subject uploads: `subjects.idempotency_key` (unique per tenant) and `subjects.request_hash`, the digest
of the upload's form fields and files that tells a replay from another request under the same key (both null for
subjects registered without a key, and for those written before this revision).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 00:00:02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("subjects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("idempotency_key", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("request_hash", sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint("uq_subjects_idempotency", ["tenant_id", "idempotency_key"])


def downgrade() -> None:
    with op.batch_alter_table("subjects", schema=None) as batch_op:
        batch_op.drop_constraint("uq_subjects_idempotency", type_="unique")
        batch_op.drop_column("request_hash")
        batch_op.drop_column("idempotency_key")
