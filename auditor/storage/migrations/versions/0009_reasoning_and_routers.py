"""samples: reasoning and upstream; findings: upstreams and capabilities

samples gains `reasoning_text` (the reasoning a provider returned in `reasoning` or
`reasoning_content`, never what leaked into the answer), `reasoning_source` (which of the two
fields it came in), `reasoning_tokens` (`usage.completion_tokens_details.reasoning_tokens`)
and `upstream` (the upstream host a router says served the answer). findings gains
`upstreams` (`Finding.upstreams`: a router's answers by upstream) and `capabilities`
(`Finding.capabilities`: each request parameter probed, honoured, rejected or ignored).
Older rows have none.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 23:00:00
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TEXT = sqlmodel.sql.sqltypes.AutoString
SAMPLE_COLUMNS: tuple[tuple[str, sa.types.TypeEngine[Any]], ...] = (
    ("reasoning_text", TEXT()),
    ("reasoning_source", TEXT()),
    ("reasoning_tokens", sa.Integer()),
    ("upstream", TEXT()),
)
FINDING_COLUMNS: tuple[tuple[str, sa.types.TypeEngine[Any]], ...] = (
    ("upstreams", sa.JSON()),
    ("capabilities", sa.JSON()),
)


def upgrade() -> None:
    for name, kind in SAMPLE_COLUMNS:
        op.add_column("samples", sa.Column(name, kind, nullable=True))
    for name, kind in FINDING_COLUMNS:
        op.add_column("findings", sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    # A plain ALTER (SQLite 3.35+ and PostgreSQL), as in 0007.
    for table, columns in (("samples", SAMPLE_COLUMNS), ("findings", FINDING_COLUMNS)):
        for name, _ in columns:
            op.execute(f"ALTER TABLE {table} DROP COLUMN {name}")
