"""incidents, webhook outbox and sink state

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 00:30:00
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_str = sqlmodel.sql.sqltypes.AutoString


def _ts(name: str, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model", _str(), nullable=False),
        sa.Column("provider", _str(), nullable=False),
        sa.Column("kind", _str(), nullable=False),
        sa.Column("state", _str(), nullable=False),
        sa.Column("verdict", _str(), nullable=False),
        sa.Column("severity", _str(), nullable=False),
        sa.Column("summary", _str(), nullable=False),
        sa.Column("diagnoses", sa.JSON(), nullable=True),
        sa.Column("opened_round_id", _str(), nullable=True),
        sa.Column("last_round_id", _str(), nullable=True),
        sa.Column("resolved_round_id", _str(), nullable=True),
        _ts("opened_at"),
        _ts("updated_at"),
        _ts("resolved_at", nullable=True),
        _ts("acknowledged_at", nullable=True),
        sa.Column("acknowledged_by", _str(), nullable=True),
        _ts("muted_until", nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_incidents_model"), ["model"], unique=False)
        batch_op.create_index(batch_op.f("ix_incidents_provider"), ["provider"], unique=False)
        batch_op.create_index(batch_op.f("ix_incidents_state"), ["state"], unique=False)
    op.create_table(
        "webhook_outbox",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("sink", _str(), nullable=False),
        sa.Column("event_type", _str(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("state", _str(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", _str(), nullable=True),
        _ts("created_at"),
        _ts("next_attempt_at"),
        _ts("delivered_at", nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("webhook_outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_webhook_outbox_sink"), ["sink"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_webhook_outbox_incident_id"), ["incident_id"], unique=False
        )
        batch_op.create_index("ix_webhook_outbox_due", ["state", "next_attempt_at"], unique=False)
    op.create_table(
        "webhook_sinks",
        sa.Column("name", sa.String(length=128), nullable=False),
        _ts("disabled_at", nullable=True),
        sa.Column("disabled_reason", _str(), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("webhook_sinks")
    with op.batch_alter_table("webhook_outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_outbox_due")
        batch_op.drop_index(batch_op.f("ix_webhook_outbox_incident_id"))
        batch_op.drop_index(batch_op.f("ix_webhook_outbox_sink"))
    op.drop_table("webhook_outbox")
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_incidents_state"))
        batch_op.drop_index(batch_op.f("ix_incidents_provider"))
        batch_op.drop_index(batch_op.f("ix_incidents_model"))
    op.drop_table("incidents")
