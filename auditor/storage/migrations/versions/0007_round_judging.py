"""rounds: how the round is to be judged

rounds gains `judging` (JSON): the settings its findings depend on beyond the samples, per
model (the numeric noise tolerance of the noise model), so that `auditor compare --round ID`
recomputes a round's findings as they were reached. Older rounds have none and are judged
with the defaults.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 01:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("rounds", sa.Column("judging", sa.JSON(), nullable=True))


def downgrade() -> None:
    # A plain ALTER (SQLite 3.35+ and PostgreSQL): batch mode would copy `rounds`, which the
    # foreign keys of samples and findings refuse.
    op.execute("ALTER TABLE rounds DROP COLUMN judging")
