"""reference cache and cached samples

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 15:11:41.349665
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reference_cache",
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("weights_digest", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("engine", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("response", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    with op.batch_alter_table("reference_cache", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_reference_cache_weights_digest"), ["weights_digest"], unique=False
        )

    with op.batch_alter_table("samples", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("cached", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("samples", schema=None) as batch_op:
        batch_op.drop_column("cached")

    with op.batch_alter_table("reference_cache", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reference_cache_weights_digest"))

    op.drop_table("reference_cache")
