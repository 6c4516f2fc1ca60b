"""Migrations that move data, on SQLite and PostgreSQL: a database written by an older auditor
keeps its rows and reads the same after `auditor db upgrade`."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import command
from helpers.records import finding
from sqlalchemy import inspect, select, text

from auditor.records import as_utc
from auditor.storage.db import _alembic_config, make_engine, upgrade
from auditor.storage.repository import Store
from auditor.storage.tables import FindingRow

F = FindingRow.__table__  # type: ignore[attr-defined]
STARTS = {"r1": "2026-01-01 10:00:00", "r2": "2026-01-01 09:00:00"}


def test_0006_copies_each_rounds_start_into_its_findings(db_url: str) -> None:
    """Existing findings get their round's start; findings written afterwards get it too,
    copied by `save_findings`; downgrading drops the column and the indexes again."""
    engine = make_engine(db_url)
    upgrade(engine, "0005")
    with engine.begin() as conn:
        for rid, at in STARTS.items():
            conn.execute(
                text(
                    "INSERT INTO rounds (id, suite, suite_hash, auditor_version, started_at,"
                    " status, planned_requests) VALUES (:id, 'core', 'h', 'old', :at,"
                    " 'complete', 1)"
                ),
                {"id": rid, "at": at},
            )
            conn.execute(
                text(
                    "INSERT INTO findings (round_id, model, provider, baseline, verdict,"
                    " severity, requests, errors, tokens, detector, created_at)"
                    " VALUES (:id, 'm', 'acme', 'reference', 'consistent', 'info', 1, 0, 1,"
                    " 'old', '2026-01-02 00:00:00')"
                ),
                {"id": rid},
            )
    upgrade(engine)
    store = Store(engine)
    store.save_findings(
        "r2",  # recomputed: new rows, and the round's start again
        [finding(severity="warning", requests=2, errors=0, tokens=3)],
        "new",
        {},
    )
    with engine.connect() as conn:
        rows = conn.execute(
            select(F.c.round_id, F.c.round_started_at, F.c.detector).order_by(F.c.round_id)
        ).all()
    assert [(r, as_utc(at), d) for r, at, d in rows] == [
        ("r1", datetime(2026, 1, 1, 10, tzinfo=UTC), "old"),
        ("r2", datetime(2026, 1, 1, 9, tzinfo=UTC), "new"),
    ]
    command.downgrade(_alembic_config(engine), "0005")
    assert "round_started_at" not in {c["name"] for c in inspect(engine).get_columns("findings")}
    indexes = {i["name"] for i in inspect(engine).get_indexes("samples")}
    assert "ix_samples_round_id" in indexes and "ix_samples_round_order" not in indexes
    engine.dispose()
