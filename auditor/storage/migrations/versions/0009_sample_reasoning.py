"""samples: the reasoning returned beside the answer

samples gains `reasoning_text` (the reasoning a provider returned in `reasoning` or
`reasoning_content`, never what leaked into the answer), `reasoning_source` (which of the two
fields it came in) and `reasoning_tokens` (`usage.completion_tokens_details.reasoning_tokens`).
Older samples have none.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 23:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

COLUMNS = ("reasoning_text", "reasoning_source", "reasoning_tokens")


def upgrade() -> None:
    op.add_column(
        "samples", sa.Column("reasoning_text", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
    )
    op.add_column(
        "samples", sa.Column("reasoning_source", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
    )
    op.add_column("samples", sa.Column("reasoning_tokens", sa.Integer(), nullable=True))


def downgrade() -> None:
    # A plain ALTER (SQLite 3.35+ and PostgreSQL), as in 0007.
    for column in COLUMNS:
        op.execute(f"ALTER TABLE samples DROP COLUMN {column}")
