"""What a sink is told and which sinks are told: pure functions."""

from __future__ import annotations

import json

from auditor.alerts.payload import EVIDENCE_CHARS, body_for, wants
from auditor.operations.settings import WebhookSink
from auditor.records import AlertEvent
from tests.alerts.receiver import T0, incident_event


def make_sink(**fields: object) -> WebhookSink:
    base = {"name": "ops", "url": "https://hooks.example.com/a", "secret_env": "S"}
    return WebhookSink.model_validate({**base, **fields})


def test_body_of_an_opened_incident() -> None:
    sink = make_sink(public_url="https://auditor.example.com/")
    body = body_for(incident_event(), sink, T0)
    assert body["type"] == "incident.opened"
    assert body["timestamp"] == "2026-11-25T14:00:00Z"
    incident = body["data"]["incident"]
    assert incident["model"] == "llama-3.1-8b-instruct"
    assert incident["provider"] == "ember"
    assert incident["verdict"] == "deviant"
    assert incident["severity"] == "critical"
    assert incident["state"] == "open"
    assert incident["diagnoses"][0] == {
        "kind": "system_prompt",
        "confidence": 0.79,
        "summary": "every request billed 41 more prompt tokens; tone moved",
    }
    assert incident["opened_at"] == "2026-11-25T14:00:00Z"
    assert body["data"]["round"] == {
        "id": "3c7d2af2028e",
        "url": "https://auditor.example.com/rounds/3c7d2af2028e",
    }
    evidence = body["data"]["evidence"]
    assert len(evidence) == 3  # the finding had four; a webhook carries three at most
    assert evidence[0]["reference"] == "The capital of France is Paris."
    assert len(evidence[0]["provider"]) == EVIDENCE_CHARS
    assert evidence[0]["provider"].endswith("…")
    json.dumps(body)  # plain JSON


def test_round_link_without_public_url() -> None:
    body = body_for(incident_event(), make_sink(), T0)
    assert body["data"]["round"] == {"id": "3c7d2af2028e", "url": None}


def test_test_event_body() -> None:
    body = body_for(AlertEvent(type="test"), make_sink(), T0)
    assert body["type"] == "test"
    assert body["data"]["incident"] is None
    assert body["data"]["sink"] == "ops"
    assert body["data"]["round"] is None


def test_severity_threshold() -> None:
    warning_sink = make_sink(min_severity="warning")
    critical_sink = make_sink(min_severity="critical")
    assert wants(warning_sink, incident_event(severity="warning"))
    assert wants(warning_sink, incident_event(severity="critical"))
    assert not wants(warning_sink, incident_event(severity="info"))
    assert not wants(critical_sink, incident_event(severity="warning"))
    assert wants(make_sink(min_severity="info"), incident_event(severity="info"))


def test_resolution_goes_where_the_opening_went() -> None:
    sinks = [make_sink(min_severity=level) for level in ("info", "warning", "critical")]
    for severity in ("info", "warning", "critical"):
        opened = incident_event(severity=severity)
        resolved = incident_event(severity=severity, type_="incident.resolved")
        assert [wants(s, opened) for s in sinks] == [wants(s, resolved) for s in sinks]


def test_model_and_provider_filters() -> None:
    sink = make_sink(models=["llama-3.1-8b-instruct"], providers=["ember", "fjord"])
    assert wants(sink, incident_event())
    assert not wants(sink, incident_event(model="qwen"))
    assert not wants(sink, incident_event(provider="acme"))
    assert wants(make_sink(models=["qwen"]), incident_event(model="qwen", provider="x"))


def test_the_auditors_own_incidents_pass_the_model_filters() -> None:
    sink = make_sink(models=["qwen"], providers=["acme"])
    stale = incident_event(model="suite:core", provider="auditor", kind="stale_rounds")
    assert wants(sink, stale)
    assert not wants(make_sink(min_severity="critical"), incident_event(severity="warning"))


def test_test_events_go_everywhere() -> None:
    assert wants(make_sink(min_severity="critical", models=["x"]), AlertEvent(type="test"))
