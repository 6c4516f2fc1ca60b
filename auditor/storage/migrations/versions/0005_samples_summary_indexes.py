"""samples: covering indexes for per-provider summaries over a time window

Both hold provider_id, created_at, ok, latency_ms and total_tokens, so error rate, latency
and tokens per provider over a window are read from an index alone. SQLite's planner takes
ix_samples_provider_summary (one range per provider, already grouped);
PostgreSQL's takes ix_samples_created_summary (one parallel range over the window, in the
heap's order when it visits pages that autovacuum has not yet marked all-visible), which
also serves any other time-window scan. The first replaces ix_samples_provider_created,
its prefix. Measured in bench/db_scale.py (1M samples, the README's 7-day summary).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 02:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_FIGURES = ["ok", "latency_ms", "total_tokens"]


def upgrade() -> None:
    with op.batch_alter_table("samples", schema=None) as batch_op:
        batch_op.create_index(
            "ix_samples_provider_summary", ["provider_id", "created_at", *_FIGURES], unique=False
        )
        batch_op.create_index(
            "ix_samples_created_summary", ["created_at", "provider_id", *_FIGURES], unique=False
        )
        batch_op.drop_index("ix_samples_provider_created")


def downgrade() -> None:
    with op.batch_alter_table("samples", schema=None) as batch_op:
        batch_op.create_index(
            "ix_samples_provider_created", ["provider_id", "created_at"], unique=False
        )
        batch_op.drop_index("ix_samples_created_summary")
        batch_op.drop_index("ix_samples_provider_summary")
