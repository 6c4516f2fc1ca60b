"""The results database on a real SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers.db import new_store
from helpers.records import finding
from sqlalchemy import inspect, text

from auditor.records import (
    CompletionRequest,
    CompletionResponse,
    ErrorClass,
    Message,
    ProbeCase,
    ScoreRecord,
    Usage,
    utcnow,
)
from auditor.storage.db import DatabaseError, ensure_schema, head_revision, make_engine, upgrade
from auditor.storage.repository import Store
from auditor.storage.tables import RoundRow

CASE = ProbeCase(
    id="capital", suite="core", messages=[Message(role="user", content="Capital of France?")]
)


def new_round(store: Store, round_id: str = "r1") -> RoundRow:
    return store.start_round(
        RoundRow(id=round_id, suite="core", suite_hash="h", auditor_version="t", planned_requests=3)
    )


def ok_response(text_: str = "Paris", tokens: int = 12) -> CompletionResponse:
    return CompletionResponse(
        ok=True,
        status_code=200,
        text=text_,
        finish_reason="stop",
        usage=Usage(prompt_tokens=tokens - 2, completion_tokens=2, total_tokens=tokens),
        raw_request={"model": "m", "messages": [{"role": "user", "content": "Capital of France?"}]},
        raw_response={"choices": [{"message": {"content": text_}}]},
        headers={"server": "vllm"},
        latency_s=0.25,
    )


def test_schema_has_documented_tables(db_url: str) -> None:
    store = new_store(db_url)
    tables = set(inspect(store.engine).get_table_names())
    assert {"rounds", "providers", "probe_cases", "samples", "scores", "findings"} <= tables
    columns = {c["name"] for c in inspect(store.engine).get_columns("samples")}
    assert {
        "request_json",
        "response_json",
        "error_class",
        "latency_ms",
        "ttft_ms",
        "finish_reason",
    } <= columns


def test_outdated_schema_is_refused_with_a_clear_message(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0000'"))
    with pytest.raises(DatabaseError, match="auditor db upgrade"):
        ensure_schema(engine)
    assert head_revision() != "0000"


def test_sample_roundtrip_scores_and_duplicates(db_url: str) -> None:
    store = new_store(db_url)
    new_round(store)
    pid = store.upsert_provider(
        "m", "acme", base_url="http://127.0.0.1:1/v1", config={"name": "acme"}
    )
    assert store.upsert_provider("m", "acme", base_url="http://127.0.0.1:2/v1") == pid
    store.upsert_probe_cases([CASE, CASE])
    req = CompletionRequest.from_case(CASE, 0)
    score = ScoreRecord(scorer="expect", metric="expect_pass", value=1.0, passed=True)
    sid = store.add_sample("r1", pid, req, ok_response(), [score], cost=0.001)
    assert sid is not None
    assert store.add_sample("r1", pid, req, ok_response("Lyon"), [], cost=None) is None
    ((sample, provider),) = list(store.iter_samples("r1"))
    assert provider.base_url == "http://127.0.0.1:2/v1"
    assert sample.output_text == "Paris" and sample.latency_ms == pytest.approx(250)
    assert sample.response_json == {"choices": [{"message": {"content": "Paris"}}]}
    assert sample.response_headers == {"server": "vllm"}
    with store.session() as s:
        assert s.execute(text("SELECT count(*) FROM scores")).scalar() == 1


def test_totals_count_errors_by_class_and_tokens(db_url: str) -> None:
    store = new_store(db_url)
    new_round(store)
    store.upsert_probe_cases([CASE])
    pid = store.upsert_provider("m", "acme")
    for i in range(3):
        store.add_sample(
            "r1", pid, CompletionRequest.from_case(CASE, i), ok_response(tokens=10), [], 0.5
        )
    bad = CompletionResponse(
        ok=False, status_code=503, error_class=ErrorClass.SERVER_ERROR, raw_request={}
    )
    store.add_sample("r1", pid, CompletionRequest.from_case(CASE, 3), bad, [], None)
    (totals,) = store.provider_totals("r1")
    assert totals["requests"] == 4 and totals["errors"] == 1 and totals["tokens"] == 30
    assert totals["errors_by_class"] == {"server_error": 1}
    assert totals["cost"] == pytest.approx(1.5)


def test_findings_are_replaced_not_appended(db_url: str) -> None:
    store = new_store(db_url)
    new_round(store)
    f = finding(
        baseline="history", verdict="inconclusive", severity="info", requests=3, errors=0, tokens=9
    )
    store.save_findings("r1", [f], "accounting", {})
    store.save_findings("r1", [f.model_copy(update={"requests": 4})], "accounting", {})
    assert [x.requests for x in store.findings("r1")] == [4]


def test_dead_round_is_marked_interrupted(sqlite_url: str) -> None:
    store = new_store(sqlite_url)
    row = new_round(store)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    with store.session() as s:
        s.execute(
            text("UPDATE rounds SET pid = :pid WHERE id = :id"),
            {"pid": int(dead.stdout), "id": row.id},
        )
        s.commit()
    assert store.reap_dead_rounds() == [row.id]
    reaped = store.get_round(row.id)
    assert reaped is not None and reaped.status == "interrupted"
    live = new_round(store, "r2")  # this process is alive: left alone
    assert store.reap_dead_rounds() == [] and store.get_round(live.id).status == "running"


def test_the_daemon_reaps_its_own_round_left_running_by_a_database_outage(
    sqlite_url: str,
) -> None:
    """The database went away while the daemon was marking a round finished: the round's
    row still says running, its process (the daemon) lives on. Once the suite is no longer
    running there, the daemon's next reap marks it interrupted; a round of a suite still
    running, or started after the daemon looked, is left alone."""
    store = new_store(sqlite_url)
    orphan = new_round(store, "orphan")  # suite "core", this process's pid
    assert store.reap_dead_rounds() == []  # the process lives: not dead
    looked = utcnow()
    assert store.reap_dead_rounds({"core"}, looked) == []  # its suite is still running here
    later = new_round(store, "later")
    assert store.reap_dead_rounds(set(), looked) == [orphan.id]
    assert store.get_round(orphan.id).status == "interrupted"  # type: ignore[union-attr]
    assert store.get_round(later.id).status == "running"  # type: ignore[union-attr]


def test_upgrade_from_the_first_schema_keeps_samples(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine, "0001")
    with pytest.raises(DatabaseError, match="auditor db upgrade"):
        ensure_schema(engine)
    now = "2026-01-01 00:00:00"
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO rounds (id, suite, suite_hash, auditor_version, started_at, status,"
                " planned_requests) VALUES ('r0', 'core', 'h', 'old', :now, 'complete', 1)"
            ),
            {"now": now},
        )
        conn.execute(
            text(
                "INSERT INTO providers (model, name, kind, trusted, updated_at)"
                " VALUES ('m', 'acme', 'provider', false, :now)"
            ),
            {"now": now},
        )
        conn.execute(
            text(
                'INSERT INTO probe_cases (hash, probe_id, suite, "case", first_seen)'
                " VALUES ('ph', 'p', 'core', '{}', :now)"
            ),
            {"now": now},
        )
        conn.execute(
            text(
                "INSERT INTO samples (round_id, provider_id, probe_hash, probe_id, sample_index,"
                " ok, attempts, request_json, started_at, created_at)"
                " SELECT 'r0', id, 'ph', 'p', 0, true, 1, '{}', :now, :now FROM providers"
            ),
            {"now": now},
        )
    upgrade(engine)
    ensure_schema(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT cached FROM samples")).scalar() in (False, 0)


def test_migrations_build_exactly_the_tables_the_code_declares(db_url: str) -> None:
    """Alembic's autogenerate finds nothing to add or change after `db upgrade`."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    engine = make_engine(db_url)
    upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []
