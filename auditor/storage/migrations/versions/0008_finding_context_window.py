"""findings: the provider's effective context window

findings gains `context_window` (JSON, as `Finding.context_window` in the report): the
effective window read from a context ladder, rung by rung, and what the ladder cost. Findings
of rounds without a ladder, and older ones, have none.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 20:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("findings", sa.Column("context_window", sa.JSON(), nullable=True))


def downgrade() -> None:
    # A plain ALTER (SQLite 3.35+ and PostgreSQL), as in 0007.
    op.execute("ALTER TABLE findings DROP COLUMN context_window")
