"""The webhook outbox (`webhook_outbox`) and the sinks a receiver turned off (`webhook_sinks`).

A message is queued per (event, wanting sink) in the same database as the incidents, so an
alert survives a crash or a receiver that is down, and is sent by whichever process delivers
next. Before sending, a deliverer *claims* a message by pushing its `next_attempt_at` past
the attempt (a lease): two daemons, or a daemon and `auditor alerts test`, never send it at
once, and a deliverer that dies mid-attempt leaves it due again when the lease ends.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from auditor.alerts.payload import body_for, wants
from auditor.operations.settings import AlertsConfig
from auditor.records import AlertEvent, as_utc, utcnow
from auditor.storage.repository import Store, rowcount
from auditor.storage.tables import OutboxRow, SinkStateRow

STATES = ("pending", "delivered", "failed", "disabled")


@dataclass(frozen=True)
class Message:
    """An outbox row as the deliverer needs it (times in UTC)."""

    id: str
    sink: str
    event_type: str
    body: dict[str, Any]
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    state: str = "pending"
    last_status: int | None = None
    last_error: str | None = None

    @classmethod
    def of(cls, row: OutboxRow) -> Message:
        return cls(
            id=row.id,
            sink=row.sink,
            event_type=row.event_type,
            body=row.body,
            attempts=row.attempts,
            created_at=as_utc(row.created_at),
            next_attempt_at=as_utc(row.next_attempt_at),
            state=row.state,
            last_status=row.last_status,
            last_error=row.last_error,
        )


def new_message_id() -> str:
    """A `webhook-id`: `msg_` and a random token, unique across processes and databases."""
    return f"msg_{uuid.uuid4().hex}"


def enqueue(
    store: Store,
    event: AlertEvent,
    alerts: AlertsConfig,
    now: datetime | None = None,
    *,
    sinks: Collection[str] | None = None,
    hold: timedelta | None = None,
) -> list[str]:
    """Queue `event` for every sink that wants it (only `sinks`, if given); the message ids.

    A message for a sink disabled by a 410 is recorded as `disabled` and never sent. A new
    message is due at once, or when the sink's backoff ends if the sink is failing (so it
    does not overtake older messages). `hold` makes it due only later: the caller will
    claim and send it itself, and if it dies the message still goes out after `hold`.
    """
    with store.session() as s:
        ids = enqueue_in(s, event, alerts, now, sinks=sinks, hold=hold)
        s.commit()
    return ids


def enqueue_in(
    s: Session,
    event: AlertEvent,
    alerts: AlertsConfig,
    now: datetime | None = None,
    *,
    sinks: Collection[str] | None = None,
    hold: timedelta | None = None,
) -> list[str]:
    """`enqueue` inside the caller's transaction (not committed here): the incident change
    that raised the event and its messages are stored together or not at all, so no crash
    or outage between two commits can leave an event without its alerts."""
    now = now or utcnow()
    ids: list[str] = []
    disabled = _disabled(s)
    for sink in alerts.sinks:
        if sinks is not None and sink.name not in sinks:
            continue
        if not wants(sink, event):
            continue
        row = OutboxRow(
            id=new_message_id(),
            sink=sink.name,
            event_type=event.type,
            incident_id=event.incident.id if event.incident else None,
            body=body_for(event, sink, now),
            created_at=now,
            next_attempt_at=now + hold if hold else _first_attempt(s, sink.name, now),
        )
        if sink.name in disabled:
            row.state, row.last_error = "disabled", _disabled_text(disabled[sink.name])
        s.add(row)
        ids.append(row.id)
    return ids


def _first_attempt(s: Session, sink: str, now: datetime) -> datetime:
    until = _backoff_until(s, sink)
    return max(now, until) if until else now


def _backoff_until(s: Session, sink: str) -> datetime | None:
    """When a failing sink's backoff ends (None if it is not failing)."""
    latest = s.execute(
        select(func.max(OutboxRow.next_attempt_at)).where(
            col(OutboxRow.sink) == sink,
            col(OutboxRow.state) == "pending",
            col(OutboxRow.attempts) > 0,
        )
    ).scalar()
    return as_utc(latest) if latest else None


def _disabled(s: Session) -> dict[str, SinkStateRow]:
    rows = s.execute(select(SinkStateRow).where(col(SinkStateRow.disabled_at).is_not(None)))
    return {r.name: r for r in rows.scalars()}


def _disabled_text(row: SinkStateRow) -> str:
    when = f"{as_utc(row.disabled_at):%Y-%m-%d %H:%M:%S} UTC" if row.disabled_at else "?"
    return f"sink disabled since {when}: {row.disabled_reason or 'no reason recorded'}"


def due(store: Store, now: datetime | None = None, limit: int = 100) -> list[Message]:
    """Pending messages whose next attempt has come, oldest first (the order they happened)."""
    now = now or utcnow()
    with store.session() as s:
        rows = s.execute(
            select(OutboxRow)
            .where(col(OutboxRow.state) == "pending", col(OutboxRow.next_attempt_at) <= now)
            .order_by(col(OutboxRow.created_at), col(OutboxRow.id))
            .limit(limit)
        ).scalars()
        return [Message.of(r) for r in rows]


def get_messages(store: Store, ids: Collection[str]) -> list[Message]:
    with store.session() as s:
        rows = s.execute(
            select(OutboxRow)
            .where(col(OutboxRow.id).in_(list(ids)))
            .order_by(col(OutboxRow.created_at))
        ).scalars()
        return [Message.of(r) for r in rows]


def claim(
    store: Store, msg_id: str, now: datetime, lease: timedelta, *, due_only: bool = True
) -> bool:
    """Take a pending message for one attempt. False if it is delivered, given up, or being
    sent by another process. `due_only=False` takes it whenever it is pending (the caller
    queued it itself, with a `hold`)."""
    conditions = [col(OutboxRow.id) == msg_id, col(OutboxRow.state) == "pending"]
    if due_only:
        conditions.append(col(OutboxRow.next_attempt_at) <= now)
    with store.session() as s:
        result = s.execute(update(OutboxRow).where(*conditions).values(next_attempt_at=now + lease))
        s.commit()
        return rowcount(result) == 1


def _set(store: Store, msg_id: str, **values: object) -> None:
    with store.session() as s:
        s.execute(
            update(OutboxRow)
            .where(col(OutboxRow.id) == msg_id, col(OutboxRow.state) == "pending")
            .values(**values)
        )
        s.commit()


def mark_delivered(store: Store, msg_id: str, status: int, now: datetime) -> None:
    _set(
        store,
        msg_id,
        state="delivered",
        attempts=OutboxRow.attempts + 1,
        last_status=status,
        last_error=None,
        delivered_at=now,
    )


def mark_retry(
    store: Store, msg_id: str, status: int | None, error: str, next_attempt_at: datetime
) -> None:
    _set(
        store,
        msg_id,
        attempts=OutboxRow.attempts + 1,
        last_status=status,
        last_error=error,
        next_attempt_at=next_attempt_at,
    )


def mark_failed(
    store: Store, msg_id: str, status: int | None, error: str, *, attempted: bool = True
) -> None:
    """Given up: a final answer (a 4xx), or too old to keep trying."""
    extra = {"attempts": OutboxRow.attempts + 1} if attempted else {}
    _set(store, msg_id, state="failed", last_status=status, last_error=error, **extra)


def mark_disabled(
    store: Store, msg_id: str, status: int | None, error: str, *, attempted: bool = True
) -> None:
    extra = {"attempts": OutboxRow.attempts + 1} if attempted else {}
    _set(store, msg_id, state="disabled", last_status=status, last_error=error, **extra)


def defer(store: Store, msg_id: str, error: str, until: datetime) -> None:
    """Not attempted (nothing was sent): try again at `until`, with the reason kept."""
    _set(store, msg_id, last_error=error, next_attempt_at=until)


def defer_sink(store: Store, sink: str, until: datetime) -> int:
    """Hold every pending message of a failing sink until `until`: the sink backs off as a
    whole (a receiver that is down or rate-limiting is not hit once per message)."""
    with store.session() as s:
        result = s.execute(
            update(OutboxRow)
            .where(
                col(OutboxRow.sink) == sink,
                col(OutboxRow.state) == "pending",
                col(OutboxRow.next_attempt_at) < until,
            )
            .values(next_attempt_at=until)
        )
        s.commit()
        return rowcount(result)


def disable_sink(store: Store, sink: str, reason: str, now: datetime | None = None) -> int:
    """A receiver answered 410 Gone: no more messages to it (until `enable_sink`). Its
    pending messages become `disabled`; returns how many."""
    now = now or utcnow()
    with store.session() as s:
        row = s.get(SinkStateRow, sink) or SinkStateRow(name=sink)
        row.disabled_at, row.disabled_reason = now, reason
        s.add(row)
        s.flush()
        result = s.execute(
            update(OutboxRow)
            .where(col(OutboxRow.sink) == sink, col(OutboxRow.state) == "pending")
            .values(state="disabled", last_error=_disabled_text(row))
        )
        s.commit()
        return rowcount(result)


def enable_sink(store: Store, sink: str) -> bool:
    """Send to a disabled sink again (new messages only). False if it was not disabled."""
    with store.session() as s:
        row = s.get(SinkStateRow, sink)
        if row is None or row.disabled_at is None:
            return False
        row.disabled_at, row.disabled_reason = None, None
        s.add(row)
        s.commit()
        return True


def disabled_sinks(store: Store) -> dict[str, str]:
    """Disabled sink -> why and since when."""
    with store.session() as s:
        return {name: _disabled_text(row) for name, row in _disabled(s).items()}


def list_messages(
    store: Store, state: str | None = None, sink: str | None = None, limit: int = 50
) -> list[OutboxRow]:
    """Outbox rows, newest first."""
    query = select(OutboxRow).order_by(col(OutboxRow.created_at).desc(), col(OutboxRow.id))
    if state:
        query = query.where(col(OutboxRow.state) == state)
    if sink:
        query = query.where(col(OutboxRow.sink) == sink)
    with store.session() as s:
        return list(s.execute(query.limit(limit)).scalars())
