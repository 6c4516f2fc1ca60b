"""`auditor db prune`: raw payloads past the cutoff go; what the auditor concluded stays."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from helpers.cli import run_auditor
from helpers.db import new_store
from helpers.records import finding
from sqlalchemy import func, select, update

from auditor.operations.retention import prune
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
from auditor.storage.repository import Store
from auditor.storage.tables import (
    FindingRow,
    IncidentRow,
    OutboxRow,
    ReferenceCacheRow,
    RoundRow,
    SampleRow,
    ScoreRow,
)

CASE = ProbeCase(
    id="secret-prompt",
    suite="s",
    messages=[Message(role="user", content="hi")],
    samples=3,
)
NOW = utcnow()
OLD, NEW = NOW - timedelta(days=100), NOW - timedelta(days=10)


def _response(k: int) -> CompletionResponse:
    if k == 2:
        return CompletionResponse(
            ok=False,
            status_code=503,
            error_class=ErrorClass.SERVER_ERROR,
            error_message="upstream overloaded",
            raw_request={"messages": [{"role": "user", "content": "hi"}]},
            raw_response={"error": {"message": "upstream overloaded"}},
        )
    return CompletionResponse(
        ok=True,
        text=f"answer {k}",
        finish_reason="stop",
        usage=Usage(prompt_tokens=5, completion_tokens=2, total_tokens=7),
        raw_request={"messages": [{"role": "user", "content": "hi"}], "seed": k},
        raw_response={"choices": [{"message": {"content": f"answer {k}"}}]},
        logprobs=[{"token": "answer", "logprob": -0.1}],
        tool_calls=[{"name": "f", "arguments": "{}"}],
        headers={"server": "vllm"},
    )


def _round(store: Store, round_id: str, created_at: datetime, status: str = "complete") -> None:
    store.start_round(RoundRow(id=round_id, suite="s", suite_hash="h", auditor_version="t"))
    pid = store.upsert_provider("m", "acme")
    for k in range(CASE.samples):
        score = ScoreRecord(scorer="shape", metric="chars", value=8.0)
        store.add_sample(
            round_id, pid, CompletionRequest.from_case(CASE, k), _response(k), [score], None
        )
    if status != "running":
        store.finish_round(round_id, status, None)
    store.save_findings(round_id, [finding(requests=3, tokens=14)], "test", {})
    with store.session() as s:
        s.execute(
            update(SampleRow).where(SampleRow.round_id == round_id).values(created_at=created_at)
        )
        s.commit()


def seeded_store(url: str) -> Store:
    store = new_store(url)
    store.upsert_probe_cases([CASE])
    _round(store, "old", OLD)
    _round(store, "new", NEW)
    _round(store, "busy", OLD, status="running")  # a round still being written
    with store.session() as s:
        s.add(
            IncidentRow(
                model="m",
                provider="acme",
                verdict="deviant",
                severity="critical",
                summary="quantization",
                opened_round_id="old",
                opened_at=OLD,
                updated_at=OLD,
            )
        )
        for mid, state, at in (
            ("msg_old_done", "delivered", OLD),
            ("msg_old_failed", "failed", OLD),
            ("msg_old_pending", "pending", OLD),  # still to deliver: kept whatever its age
            ("msg_new_done", "delivered", NEW),
        ):
            s.add(
                OutboxRow(
                    id=mid,
                    sink="ops",
                    event_type="incident.opened",
                    body={"type": "incident.opened"},
                    state=state,
                    created_at=at,
                    next_attempt_at=at,
                )
            )
        for key, at in (("old-key", OLD), ("new-key", NEW)):
            s.add(
                ReferenceCacheRow(
                    key=key, weights_digest="d", engine="e", request={}, response={}, created_at=at
                )
            )
        s.commit()
    return store


def _samples(store: Store, round_id: str) -> list[SampleRow]:
    with store.session() as s:
        rows = s.execute(
            select(SampleRow).where(SampleRow.round_id == round_id).order_by(SampleRow.id)
        )
        return list(rows.scalars())


def _count(store: Store, table: type) -> int:
    with store.session() as s:
        return s.execute(select(func.count()).select_from(table)).scalar_one()


def test_prune_drops_old_payloads_and_keeps_what_was_concluded(db_url: str) -> None:
    store = seeded_store(db_url)
    new_before = [r.model_dump() for r in _samples(store, "new")]
    counts = {t: _count(store, t) for t in (FindingRow, IncidentRow, ScoreRow, SampleRow)}

    dry = prune(store, timedelta(days=90), now=NOW, dry_run=True)
    assert (dry.samples, dry.outbox, dry.reference_cache) == (3, 2, 1)
    assert _samples(store, "old")[0].response_json is not None, "a dry run changes nothing"

    result = prune(store, timedelta(days=90), now=NOW)
    assert (result.samples, result.outbox, result.reference_cache) == (3, 2, 1)

    for row in _samples(store, "old"):
        assert row.request_json == {}
        assert row.response_json is None and row.logprobs_json is None
        assert row.tool_calls_json is None and row.response_headers is None
    ok, _, failed = _samples(store, "old")
    assert ok.output_text == "answer 0" and ok.total_tokens == 7 and ok.finish_reason == "stop"
    assert failed.error_class == "server_error" and failed.error_message == "upstream overloaded"

    assert [r.model_dump() for r in _samples(store, "new")] == new_before, "newer: untouched"
    assert all(r.response_json for r in _samples(store, "busy")[:2]), "running round: untouched"
    assert {t: _count(store, t) for t in counts} == counts, "findings, incidents, scores kept"
    with store.session() as s:
        outbox = set(s.execute(select(OutboxRow.id)).scalars())
        cache = set(s.execute(select(ReferenceCacheRow.key)).scalars())
    assert outbox == {"msg_old_pending", "msg_new_done"}
    assert cache == {"new-key"}
    assert store.findings("old")[0].verdict == "deviant", "the old round still reports"

    again = prune(store, timedelta(days=90), now=NOW)
    assert (again.samples, again.outbox, again.reference_cache) == (0, 0, 0)


def test_prune_refuses_a_non_positive_period(sqlite_url: str) -> None:
    store = seeded_store(sqlite_url)
    with pytest.raises(ValueError, match="positive"):
        prune(store, timedelta(0))


@pytest.mark.slow
def test_db_prune_command(tmp_path: Path, db_url: str) -> None:
    seeded_store(db_url)
    dry = run_auditor(
        "db", "prune", "--older-than", "90d", "--dry-run", "--database", db_url, cwd=tmp_path
    )
    assert dry.returncode == 0, dry.stderr
    assert "would drop the raw payloads of 3" in dry.stdout
    assert "would delete 2 settled message(s)" in dry.stdout

    run = run_auditor("db", "prune", "--older-than", "90d", "--database", db_url, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "dropped the raw payloads of 3" in run.stdout
    assert "reference_cache: deleted 1 cached answer(s)" in run.stdout

    bad = run_auditor("db", "prune", "--older-than", "soon", "--database", db_url, cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.startswith("auditor: error: --older-than:") and "Traceback" not in bad.stderr
