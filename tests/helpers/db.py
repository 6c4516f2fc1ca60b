"""Real databases for the tests: a fresh PostgreSQL database on the loopback server, and stores
over a URL (from `postgres_database` or the `sqlite_url`, `pg_url` and `db_url` fixtures of
tests/conftest.py) with the schema in place."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime

import psycopg

from auditor.records import ProbeCase
from auditor.storage.db import ensure_schema, make_engine
from auditor.storage.repository import Store
from auditor.storage.tables import RoundRow

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, empty database on the PostgreSQL server at 127.0.0.1:5432, its URL; dropped
    (connections and all) afterwards."""
    name = f"auditor_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def new_store(url: str) -> Store:
    """A Store over `url`, its schema created (or upgraded) first."""
    engine = make_engine(url)
    ensure_schema(engine)
    return Store(engine)


def store_with_round(
    url: str, cases: Iterable[ProbeCase], round_id: str = "r", suite: str = "s"
) -> Store:
    """A new store holding `cases` and a started round `round_id`, for a runner to fill."""
    store = new_store(url)
    store.upsert_probe_cases(list(cases))
    store.start_round(RoundRow(id=round_id, suite=suite, suite_hash="h", auditor_version="t"))
    return store


def set_round_times(store: Store, round_id: str, started: datetime, finished: datetime) -> None:
    """Move a stored round in time (its start and end, as if it had run then)."""
    with store.session() as s:
        row = s.get(RoundRow, round_id)
        assert row is not None
        row.started_at, row.finished_at = started, finished
        s.add(row)
        s.commit()
