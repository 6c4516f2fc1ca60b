"""Retention: `auditor db prune --older-than 90d`.

What the auditor concluded is kept for good: rounds, findings, incidents, calibrations,
scores and every sample's plain columns (ok, error class and message, answer text, tokens,
latency...), so reports, exports and history baselines still work on old rounds. What is
dropped past the cutoff is what takes the space: each sample's raw payloads (the request
body becomes `{}`, the response body, logprobs, tool calls and headers become NULL), settled
webhook messages (delivered, failed, disabled), and cached reference answers (a later round
recomputes one it needs).

Recomputing an old round with `auditor compare` after pruning loses the tests that read raw
payloads (returned logprobs, tool calls); those read from scores and plain columns remain.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Text, and_, cast, delete, func, null, or_, select, update
from sqlmodel import col

from auditor.records import as_utc, utcnow
from auditor.storage.repository import Store, rowcount
from auditor.storage.tables import OutboxRow, ReferenceCacheRow, RoundRow, SampleRow

SETTLED_OUTBOX_STATES = ("delivered", "failed", "disabled")
PAYLOAD_COLUMNS = ("response_json", "logprobs_json", "tool_calls_json", "response_headers")
BATCH = 2000  # samples per transaction: SQLite writers (a running daemon) wait only briefly


@dataclass(frozen=True)
class PruneResult:
    cutoff: datetime
    dry_run: bool
    samples: int  # samples whose raw payloads were dropped (or would be)
    outbox: int  # settled webhook messages deleted
    reference_cache: int  # cached reference answers deleted

    def lines(self) -> list[str]:
        verb = "would drop" if self.dry_run else "dropped"
        rm = "would delete" if self.dry_run else "deleted"
        return [
            f"cutoff {self.cutoff:%Y-%m-%d %H:%M:%S} UTC",
            f"samples: {verb} the raw payloads of {self.samples} "
            "(plain columns, scores, findings and incidents kept)",
            f"webhook_outbox: {rm} {self.outbox} settled message(s)",
            f"reference_cache: {rm} {self.reference_cache} cached answer(s)",
        ]


def _holds(column: ColumnElement[object]) -> ColumnElement[bool]:
    # A payload the ORM wrote as None is stored as JSON `null`, not SQL NULL: both are empty.
    return and_(column.is_not(None), cast(column, Text) != "null")


def _prunable_samples(cutoff: datetime) -> ColumnElement[bool]:
    running = select(col(RoundRow.id)).where(col(RoundRow.status) == "running")
    has_payload = or_(
        cast(SampleRow.request_json, Text) != "{}",
        *(_holds(getattr(SampleRow, name)) for name in PAYLOAD_COLUMNS),
    )
    # A running round's samples are never touched: its scoring may still read them.
    return and_(
        col(SampleRow.created_at) < cutoff, col(SampleRow.round_id).not_in(running), has_payload
    )


def prune(
    store: Store,
    older_than: timedelta,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    batch: int = BATCH,
) -> PruneResult:
    if older_than <= timedelta(0):
        raise ValueError("the retention period must be positive")
    cutoff = as_utc(now or utcnow()) - older_than
    samples = _prune_samples(store, cutoff, dry_run, batch)
    outbox_where = and_(
        col(OutboxRow.state).in_(SETTLED_OUTBOX_STATES), col(OutboxRow.created_at) < cutoff
    )
    cache_where = col(ReferenceCacheRow.created_at) < cutoff
    with store.session() as s:
        if dry_run:
            outbox = s.execute(select(func.count()).where(outbox_where)).scalar_one()
            cache = s.execute(select(func.count()).where(cache_where)).scalar_one()
        else:
            outbox = rowcount(s.execute(delete(OutboxRow).where(outbox_where)))
            cache = rowcount(s.execute(delete(ReferenceCacheRow).where(cache_where)))
            s.commit()
    return PruneResult(cutoff, dry_run, samples, outbox, cache)


def _prune_samples(store: Store, cutoff: datetime, dry_run: bool, batch: int) -> int:
    where = _prunable_samples(cutoff)
    if dry_run:
        with store.session() as s:
            count: int = s.execute(select(func.count(col(SampleRow.id))).where(where)).scalar_one()
            return count
    emptied = {name: null() for name in PAYLOAD_COLUMNS}
    done = 0
    while True:
        with store.session() as s:
            ids = list(
                s.execute(
                    select(col(SampleRow.id)).where(where).order_by(col(SampleRow.id)).limit(batch)
                )
                .scalars()
                .all()
            )
            if not ids:
                return done
            s.execute(
                update(SampleRow)
                .where(col(SampleRow.id).in_(ids))
                .values(request_json={}, **emptied)
                .execution_options(synchronize_session=False)
            )
            s.commit()
        done += len(ids)
