"""Findings -> incidents -> alert events.

An incident opens when a provider's finding turns `deviant` or `unavailable` and resolves
when a later finding is `consistent` again; `inconclusive` changes nothing. Sinks hear of an
incident twice (opened, resolved), never once per round while it stays open. The auditor
watches itself the same way: a suite with no completed round for `stale_factor` times its
interval opens a `stale_rounds` incident for provider `auditor`.

A muted incident raises no alert until `muted_until`; an acknowledged one is shown as such.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from auditor.operations.settings import ScheduleEntry
from auditor.records import AlertEvent, Diagnosis, Finding, IncidentInfo, as_utc, utcnow
from auditor.storage.repository import Store
from auditor.storage.tables import IncidentRow, RoundRow

AUDITOR = "auditor"
OPENING = ("deviant", "unavailable")


def info(row: IncidentRow) -> IncidentInfo:
    return IncidentInfo(
        id=row.id or 0,
        model=row.model,
        provider=row.provider,
        kind=row.kind,
        state=row.state,
        verdict=row.verdict,
        severity=row.severity,
        summary=row.summary,
        diagnoses=[Diagnosis.model_validate(d) for d in row.diagnoses or []],
        opened_round_id=row.opened_round_id,
        last_round_id=row.last_round_id,
        resolved_round_id=row.resolved_round_id,
        opened_at=as_utc(row.opened_at),
        resolved_at=as_utc(row.resolved_at) if row.resolved_at else None,
        acknowledged=row.acknowledged_at is not None,
    )


def _summary(finding: Finding) -> str:
    if finding.diagnoses:
        return f"{finding.verdict}: {finding.diagnoses[0].summary}"
    if finding.verdict == "unavailable":
        classes = ", ".join(f"{k} {v}" for k, v in sorted(finding.errors_by_class.items()))
        return f"unavailable: {finding.errors} of {finding.requests} requests failed ({classes})"
    return finding.verdict


def _muted(row: IncidentRow, now: datetime) -> bool:
    return row.muted_until is not None and as_utc(row.muted_until) > now


def _open_row(s: Session, model: str, provider: str, kind: str) -> IncidentRow | None:
    return s.execute(
        select(IncidentRow).where(
            col(IncidentRow.model) == model,
            col(IncidentRow.provider) == provider,
            col(IncidentRow.kind) == kind,
            col(IncidentRow.state) == "open",
        )
    ).scalar_one_or_none()


Queue = Callable[[Session, AlertEvent], object]
"""Stores an event's alerts in the incident change's own transaction (`outbox.enqueue_in`)."""


def update_from_findings(
    store: Store,
    round_id: str,
    findings: Iterable[Finding],
    now: datetime | None = None,
    *,
    queue: Queue | None = None,
) -> list[AlertEvent]:
    """Open, keep or resolve each provider's incident after a completed round; the alert
    events to send (none for muted incidents). With `queue`, each event's alerts are
    committed with the incident change, atomically."""
    now = now or utcnow()
    events: list[AlertEvent] = []
    with store.session() as s:
        for f in findings:
            row = _open_row(s, f.model, f.provider, "provider")
            if f.verdict in OPENING and row is None:
                row = IncidentRow(
                    model=f.model,
                    provider=f.provider,
                    kind="provider",
                    state="open",
                    verdict=f.verdict,
                    severity=f.severity,
                    summary=_summary(f),
                    diagnoses=[d.model_dump() for d in f.diagnoses],
                    opened_round_id=round_id,
                    last_round_id=round_id,
                    opened_at=now,
                    updated_at=now,
                )
                s.add(row)
                s.flush()
                opened = AlertEvent(
                    type="incident.opened",
                    incident=info(row),
                    evidence=f.evidence,
                    round_id=round_id,
                )
                events.append(opened)
            elif f.verdict in OPENING and row is not None:
                row.last_round_id, row.updated_at = round_id, now
            elif f.verdict == "consistent" and row is not None:
                row.state, row.resolved_round_id, row.resolved_at = "resolved", round_id, now
                row.last_round_id, row.updated_at = round_id, now
                if not _muted(row, now):
                    events.append(
                        AlertEvent(type="incident.resolved", incident=info(row), round_id=round_id)
                    )
        _queue_all(s, events, queue)
        s.commit()
    return events


def _queue_all(s: Session, events: list[AlertEvent], queue: Queue | None) -> None:
    if queue is not None:
        s.flush()
        for event in events:
            queue(s, event)


def check_staleness(
    store: Store,
    schedule: Iterable[ScheduleEntry],
    stale_factor: float,
    since: datetime,
    now: datetime | None = None,
    *,
    queue: Queue | None = None,
) -> list[AlertEvent]:
    """A suite with no completed round for `stale_factor` intervals (counted from its last
    completed round, or from `since`, when the daemon started) opens an incident about the
    auditor itself; the next completed round resolves it."""
    now = now or utcnow()
    events: list[AlertEvent] = []
    with store.session() as s:
        for entry in schedule:
            last = s.execute(
                select(col(RoundRow.finished_at))
                .where(col(RoundRow.suite) == entry.suite, col(RoundRow.status) == "complete")
                .order_by(col(RoundRow.finished_at).desc())
                .limit(1)
            ).scalar()
            reference = max(as_utc(last), since) if last else since
            limit = timedelta(seconds=entry.interval().total_seconds() * stale_factor)
            stale = now - reference > limit
            model = f"suite:{entry.suite}"
            row = _open_row(s, model, AUDITOR, "stale_rounds")
            if stale and row is None:
                summary = (
                    f"no completed round of suite {entry.suite} since "
                    f"{reference:%Y-%m-%d %H:%M:%S} UTC ({stale_factor:g} times its interval)"
                )
                row = IncidentRow(
                    model=model,
                    provider=AUDITOR,
                    kind="stale_rounds",
                    state="open",
                    verdict="stale",
                    severity="critical",
                    summary=summary,
                    diagnoses=[],
                    opened_at=now,
                    updated_at=now,
                )
                s.add(row)
                s.flush()
                events.append(AlertEvent(type="incident.opened", incident=info(row)))
            elif not stale and row is not None:
                row.state, row.resolved_at, row.updated_at = "resolved", now, now
                if not _muted(row, now):
                    events.append(AlertEvent(type="incident.resolved", incident=info(row)))
        _queue_all(s, events, queue)
        s.commit()
    return events


def list_incidents(store: Store, state: str | None = None, limit: int = 100) -> list[IncidentRow]:
    with store.session() as s:
        query = select(IncidentRow).order_by(col(IncidentRow.opened_at).desc()).limit(limit)
        if state:
            query = query.where(col(IncidentRow.state) == state)
        return list(s.execute(query).scalars())


def acknowledge(store: Store, incident_id: int, by: str, now: datetime | None = None) -> bool:
    """Mark an incident as seen by someone; False when there is no such incident."""
    with store.session() as s:
        row = s.get(IncidentRow, incident_id)
        if row is None:
            return False
        row.acknowledged_at, row.acknowledged_by = now or utcnow(), by
        s.commit()
    return True


def mute(store: Store, incident_id: int, until: datetime | None) -> bool:
    """No alerts for the incident until `until` (None unmutes); False when there is none."""
    with store.session() as s:
        row = s.get(IncidentRow, incident_id)
        if row is None:
            return False
        row.muted_until = until
        s.commit()
    return True
