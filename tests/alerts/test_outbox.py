"""The outbox table on real SQLite and PostgreSQL: queueing, due order, claims, sink state."""

from __future__ import annotations

from datetime import timedelta

import pytest
from helpers.db import new_store
from sqlalchemy import select, text

from auditor.alerts import outbox
from auditor.alerts.payload import body_for
from auditor.records import AlertEvent, as_utc
from auditor.storage.repository import Store
from auditor.storage.tables import OutboxRow
from tests.alerts.receiver import T0, alerts_config, incident_event, sink

URL = "https://hooks.example.com/x"


@pytest.fixture
def db_store(db_url: str) -> Store:
    return new_store(db_url)


def rows(store: Store) -> dict[str, OutboxRow]:
    with store.session() as s:
        return {r.id: r for r in s.execute(select(OutboxRow)).scalars()}


def test_enqueue_one_message_per_wanting_sink(db_store: Store) -> None:
    config = alerts_config(
        sink("all", URL),
        sink("critical-only", URL, min_severity="critical"),
        sink("other-model", URL, models=["qwen"]),
    )
    ids = outbox.enqueue(db_store, incident_event(severity="warning"), config, T0)
    assert len(ids) == 1 and ids[0].startswith("msg_")
    row = rows(db_store)[ids[0]]
    assert row.sink == "all"
    assert row.event_type == "incident.opened"
    assert row.incident_id == 7
    assert row.state == "pending" and row.attempts == 0
    assert as_utc(row.next_attempt_at) == T0
    assert row.body == body_for(incident_event(severity="warning"), config.sinks[0], T0)
    ids2 = outbox.enqueue(db_store, incident_event(severity="critical"), config, T0)
    assert len(ids2) == 2 and not set(ids) & set(ids2)


def test_due_oldest_first_and_claims_are_exclusive(db_store: Store) -> None:
    config = alerts_config(sink("a", URL))
    first = outbox.enqueue(db_store, incident_event(1), config, T0)[0]
    second = outbox.enqueue(db_store, incident_event(2), config, T0 + timedelta(seconds=1))[0]
    outbox.enqueue(db_store, incident_event(3), config, T0 + timedelta(hours=1))
    due = outbox.due(db_store, T0 + timedelta(seconds=5))
    assert [m.id for m in due] == [first, second]
    assert [m.id for m in outbox.due(db_store, T0 + timedelta(seconds=5), limit=1)] == [first]
    now = T0 + timedelta(seconds=5)
    assert outbox.claim(db_store, first, now, timedelta(seconds=40))
    assert not outbox.claim(db_store, first, now, timedelta(seconds=40))  # another process
    assert [m.id for m in outbox.due(db_store, now)] == [second]
    # The lease ends: due again (a deliverer that died mid-attempt).
    assert first in [m.id for m in outbox.due(db_store, now + timedelta(seconds=41))]


def test_a_held_message_is_claimed_by_its_owner_only(db_store: Store) -> None:
    config = alerts_config(sink("a", URL))
    msg = outbox.enqueue(db_store, AlertEvent(type="test"), config, T0, hold=timedelta(minutes=1))
    assert outbox.due(db_store, T0) == []
    assert outbox.claim(db_store, msg[0], T0, timedelta(seconds=30), due_only=False)
    outbox.mark_delivered(db_store, msg[0], 204, T0)
    assert not outbox.claim(db_store, msg[0], T0, timedelta(seconds=30), due_only=False)
    row = rows(db_store)[msg[0]]
    assert (row.state, row.attempts, row.last_status) == ("delivered", 1, 204)


def test_disabled_sink(db_store: Store) -> None:
    config = alerts_config(sink("gone", URL), sink("fine", URL))
    pending = outbox.enqueue(db_store, incident_event(1), config, T0)
    assert outbox.disable_sink(db_store, "gone", "HTTP 410", T0) == 1
    states = {r.sink: r.state for r in rows(db_store).values()}
    assert states == {"gone": "disabled", "fine": "pending"}
    later = outbox.enqueue(db_store, incident_event(2), config, T0)
    by_id = rows(db_store)
    assert sorted(by_id[i].state for i in later) == ["disabled", "pending"]
    assert "HTTP 410" in (by_id[later[0]].last_error or "")
    assert set(outbox.disabled_sinks(db_store)) == {"gone"}
    assert outbox.enable_sink(db_store, "gone")
    assert not outbox.enable_sink(db_store, "gone")
    assert outbox.disabled_sinks(db_store) == {}
    assert len(pending) == 2


def test_a_failing_sink_holds_new_messages_behind_its_backoff(db_store: Store) -> None:
    config = alerts_config(sink("a", URL))
    first = outbox.enqueue(db_store, incident_event(1), config, T0)[0]
    until = T0 + timedelta(minutes=3)
    outbox.mark_retry(db_store, first, 503, "HTTP 503", until)
    second = outbox.enqueue(db_store, incident_event(2), config, T0 + timedelta(seconds=10))[0]
    assert as_utc(rows(db_store)[second].next_attempt_at) == until


def test_the_readme_can_query_the_outbox(db_store: Store) -> None:
    outbox.enqueue(db_store, incident_event(), alerts_config(sink("a", URL)), T0)
    with db_store.engine.connect() as conn:
        found = conn.execute(
            text("SELECT sink, event_type, state FROM webhook_outbox WHERE state = 'pending'")
        ).all()
    assert [tuple(r) for r in found] == [("a", "incident.opened", "pending")]
