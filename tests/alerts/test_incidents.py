"""Incidents open once, resolve once, stay quiet while muted; the auditor watches itself."""

from __future__ import annotations

from datetime import timedelta

import pytest
from helpers.db import new_store
from helpers.records import finding as base_finding
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from auditor.alerts.incidents import (
    acknowledge,
    check_staleness,
    list_incidents,
    mute,
    update_from_findings,
)
from auditor.alerts.outbox import enqueue_in, list_messages
from auditor.operations.settings import ScheduleEntry
from auditor.records import AlertEvent, Diagnosis, Evidence, Finding, utcnow
from auditor.storage.tables import RoundRow
from tests.alerts.receiver import alerts_config, sink


def finding(verdict: str, provider: str = "acme") -> Finding:
    deviant, unavailable = verdict == "deviant", verdict == "unavailable"
    diagnosis = Diagnosis(kind="quantization", confidence=0.8, summary="weights moved")
    evidence = Evidence(probe="p", reference="Paris", provider="Lyon", note="differs")
    return base_finding(
        provider=provider,
        verdict=verdict,
        severity="critical" if deviant else ("warning" if unavailable else "info"),
        diagnoses=[diagnosis] if deviant else [],
        evidence=[evidence] if deviant else [],
        errors=10 if unavailable else 0,
        errors_by_class={"server_error": 10} if unavailable else {},
    )


def test_one_alert_when_an_incident_opens_and_one_when_it_resolves(db_url: str) -> None:
    store = new_store(db_url)
    (opened,) = update_from_findings(store, "r1", [finding("deviant"), finding("consistent", "b")])
    assert opened.type == "incident.opened" and opened.incident is not None
    assert opened.incident.severity == "critical" and opened.evidence[0].provider == "Lyon"
    assert opened.incident.summary == "deviant: weights moved"
    assert update_from_findings(store, "r2", [finding("deviant")]) == []  # still open: quiet
    assert update_from_findings(store, "r3", [finding("inconclusive")]) == []
    (resolved,) = update_from_findings(store, "r4", [finding("consistent")])
    assert resolved.type == "incident.resolved" and resolved.incident is not None
    assert resolved.incident.opened_round_id == "r1"
    assert resolved.incident.resolved_round_id == "r4"
    (row,) = list_incidents(store)
    assert row.state == "resolved" and row.last_round_id == "r4"


def test_unavailable_opens_an_incident_naming_the_errors(db_url: str) -> None:
    store = new_store(db_url)
    (opened,) = update_from_findings(store, "r1", [finding("unavailable")])
    assert opened.incident is not None and "server_error 10" in opened.incident.summary


def test_a_muted_incident_resolves_without_an_alert(db_url: str) -> None:
    store = new_store(db_url)
    (opened,) = update_from_findings(store, "r1", [finding("deviant")])
    assert opened.incident is not None
    assert mute(store, opened.incident.id, utcnow() + timedelta(hours=1))
    assert acknowledge(store, opened.incident.id, "ops")
    assert update_from_findings(store, "r2", [finding("consistent")]) == []
    (row,) = list_incidents(store)
    assert row.state == "resolved" and row.acknowledged_by == "ops"
    assert not mute(store, 999, None) and not acknowledge(store, 999, "ops")


def test_a_stale_schedule_opens_an_incident_about_the_auditor(db_url: str) -> None:
    store = new_store(db_url)
    entry = ScheduleEntry(suite="core", every=timedelta(minutes=10))
    now = utcnow()
    started = now - timedelta(minutes=15)
    assert check_staleness(store, [entry], 2.0, started, now) == []  # 15 min < 2 intervals
    (opened,) = check_staleness(store, [entry], 2.0, started, now + timedelta(minutes=10))
    assert opened.incident is not None and opened.incident.provider == "auditor"
    assert "suite core" in opened.incident.summary and opened.incident.kind == "stale_rounds"
    assert check_staleness(store, [entry], 2.0, started, now + timedelta(minutes=11)) == []
    store.start_round(RoundRow(id="r", suite="core", suite_hash="h", auditor_version="t"))
    store.finish_round("r", "complete", None)
    (resolved,) = check_staleness(store, [entry], 2.0, started, utcnow())
    assert resolved.type == "incident.resolved"


def test_an_incident_change_and_its_alerts_are_stored_together_or_not_at_all(
    db_url: str,
) -> None:
    """The database goes away between the incident's change and its alerts (here: queueing
    them fails): neither is stored, so the next round opens the incident again and its
    alerts go out. Before, the incident was committed first and its alerts were lost."""
    store = new_store(db_url)
    alerts = alerts_config(sink("ops", "http://127.0.0.1:9/hooks"))

    def away(_s: Session, _event: AlertEvent) -> None:
        raise OperationalError("INSERT INTO webhook_outbox", {}, ConnectionError("gone"))

    with pytest.raises(OperationalError):
        update_from_findings(store, "r1", [finding("deviant")], queue=away)
    assert list_incidents(store) == [] and list_messages(store) == []
    (opened,) = update_from_findings(
        store, "r2", [finding("deviant")], queue=lambda s, e: enqueue_in(s, e, alerts)
    )
    (message,) = list_messages(store)
    assert opened.incident is not None and message.incident_id == opened.incident.id
    assert message.event_type == "incident.opened" and message.state == "pending"
