"""dashboard: findings in round order from an index; samples pages in id order

findings gains round_started_at, a copy of its round's started_at (backfilled here; filled
from rounds on insert), the order the dashboard reads a provider's findings in: by round
start, so a recomputed old round stays old. ix_findings_pair_order (model, provider,
round_started_at, id) gives a provider's latest finding and its newest rounds, and
ix_findings_pair_verdict (model, provider, verdict, round_started_at) its latest finding of
each verdict: the overview's "since when" is a few seeks per provider instead of a pass over
every finding (it grew linearly with history).

samples gains (round_id, id), (provider_id, id) and (probe_id, id): a page of the newest
samples filtered on a round, a provider or a probe is a range read in id order, not a sort of
every match (a provider's 42,000 samples in bench/dashboard.py). The first replaces
ix_samples_round_id, its prefix.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("findings", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("round_started_at", sa.DateTime(timezone=True), nullable=True)
        )
    op.execute(
        "UPDATE findings SET round_started_at = "
        "(SELECT rounds.started_at FROM rounds WHERE rounds.id = findings.round_id)"
    )
    with op.batch_alter_table("findings", schema=None) as batch_op:
        batch_op.alter_column(
            "round_started_at", existing_type=sa.DateTime(timezone=True), nullable=False
        )
        batch_op.create_index(
            "ix_findings_pair_order",
            ["model", "provider", "round_started_at", "id"],
            unique=False,
        )
        batch_op.create_index(
            "ix_findings_pair_verdict",
            ["model", "provider", "verdict", "round_started_at"],
            unique=False,
        )
    with op.batch_alter_table("samples", schema=None) as batch_op:
        batch_op.create_index("ix_samples_round_order", ["round_id", "id"], unique=False)
        batch_op.create_index("ix_samples_provider_order", ["provider_id", "id"], unique=False)
        batch_op.create_index("ix_samples_probe_order", ["probe_id", "id"], unique=False)
        batch_op.drop_index("ix_samples_round_id")


def downgrade() -> None:
    with op.batch_alter_table("samples", schema=None) as batch_op:
        batch_op.create_index("ix_samples_round_id", ["round_id"], unique=False)
        batch_op.drop_index("ix_samples_probe_order")
        batch_op.drop_index("ix_samples_provider_order")
        batch_op.drop_index("ix_samples_round_order")
    with op.batch_alter_table("findings", schema=None) as batch_op:
        batch_op.drop_index("ix_findings_pair_verdict")
        batch_op.drop_index("ix_findings_pair_order")
        batch_op.drop_column("round_started_at")
