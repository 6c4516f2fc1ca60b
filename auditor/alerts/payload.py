"""What a webhook sink is told about an event, and which sinks want it.

The body follows the contract in DESIGN.md: `{"type", "timestamp", "data"}`. It is built
once per sink when the event is queued (the round link uses the sink's own `public_url`) and
stored as is, so every retry sends the same bytes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from auditor import __version__
from auditor.operations.settings import WebhookSink
from auditor.records import AlertEvent, Evidence, IncidentInfo, utcnow

SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
EVIDENCE_ITEMS = 3  # probes shown in a webhook (the finding's evidence is the 2-3 that differ most)
EVIDENCE_CHARS = 300  # each answer is cut to this many characters


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a `Z`, as in the report JSON."""
    if value is None:
        return None
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.isoformat().replace("+00:00", "Z")


def wants(sink: WebhookSink, event: AlertEvent) -> bool:
    """Whether `sink` is sent `event`.

    A test event goes to every sink. An incident event goes where its severity reaches the
    sink's `min_severity` and its model and provider pass the sink's filters. Filtering on
    the incident (not on the event) sends a resolution to exactly the sinks that got the
    opening. Incidents about the auditor itself (a stale schedule) concern every model, so
    the model and provider filters do not apply to them.
    """
    if event.type == "test" or event.incident is None:
        return True
    incident = event.incident
    if SEVERITY_RANK[incident.severity] < SEVERITY_RANK[sink.min_severity]:
        return False
    if incident.kind != "provider":
        return True
    if sink.models is not None and incident.model not in sink.models:
        return False
    return sink.providers is None or incident.provider in sink.providers


def _cut(text: str, limit: int = EVIDENCE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _evidence(items: list[Evidence]) -> list[dict[str, str]]:
    return [
        {
            "probe": e.probe,
            "reference": _cut(e.reference),
            "provider": _cut(e.provider),
            "note": _cut(e.note),
        }
        for e in items[:EVIDENCE_ITEMS]
    ]


def _incident(incident: IncidentInfo) -> dict[str, Any]:
    return {
        "id": incident.id,
        "kind": incident.kind,
        "state": incident.state,
        "model": incident.model,
        "provider": incident.provider,
        "verdict": incident.verdict,
        "severity": incident.severity,
        "summary": incident.summary,
        "diagnoses": [d.model_dump(mode="json") for d in incident.diagnoses],
        "opened_at": iso(incident.opened_at),
        "resolved_at": iso(incident.resolved_at),
        "opened_round_id": incident.opened_round_id,
        "last_round_id": incident.last_round_id,
        "resolved_round_id": incident.resolved_round_id,
        "acknowledged": incident.acknowledged,
    }


def round_of(event: AlertEvent) -> str | None:
    """The round the event is about: the event's own, else the incident's latest."""
    if event.round_id:
        return event.round_id
    incident = event.incident
    if incident is None:
        return None
    return incident.resolved_round_id or incident.last_round_id or incident.opened_round_id


def round_link(sink: WebhookSink, round_id: str | None) -> dict[str, str | None] | None:
    if round_id is None:
        return None
    url = f"{sink.public_url.rstrip('/')}/rounds/{round_id}" if sink.public_url else None
    return {"id": round_id, "url": url}


def body_for(event: AlertEvent, sink: WebhookSink, now: datetime | None = None) -> dict[str, Any]:
    """The JSON body sent to `sink` for `event`; `timestamp` is when the event was queued."""
    data: dict[str, Any] = {
        "incident": _incident(event.incident) if event.incident else None,
        "evidence": _evidence(event.evidence),
        "round": round_link(sink, round_of(event)),
    }
    if event.type == "test":
        data["message"] = f"test event from the provider auditor to sink {sink.name}"
        data["sink"] = sink.name
    data["auditor_version"] = __version__
    return {"type": event.type, "timestamp": iso(now or utcnow()), "data": data}
