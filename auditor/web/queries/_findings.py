"""Findings: one as in the report contract, and the filtered list, newest first."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, select
from sqlmodel import col

from auditor.records import as_utc
from auditor.report.render import round_info
from auditor.storage.repository import Store, _finding_from_row
from auditor.storage.tables import FindingRow, ProviderRow, RoundRow
from auditor.web.queries.common import F, R
from auditor.web.queries.paging import (
    MAX_ID,
    _before,
    _encode_cursor,
    _limit,
    _storable,
    _time_cursor,
    _utc_text,
)
from auditor.web.views import FindingDetail, Page


def _finding_detail(f: FindingRow, r: RoundRow, provider_id: int | None) -> FindingDetail:
    assert f.id is not None
    return FindingDetail(
        id=f.id,
        round=round_info(r),
        provider_id=provider_id,
        finding=_finding_from_row(f),
        detector=f.detector,
        created_at=as_utc(f.created_at),
    )


def _findings_select() -> Any:
    return (
        select(FindingRow, RoundRow, col(ProviderRow.id))
        .join(RoundRow, col(RoundRow.id) == FindingRow.round_id)
        .outerjoin(
            ProviderRow,
            and_(
                col(ProviderRow.model) == FindingRow.model,
                col(ProviderRow.name) == FindingRow.provider,
            ),
        )
    )


def finding(store: Store, finding_id: int) -> FindingDetail | None:
    """One finding as in the report contract, with its round and the provider's id."""
    if not 0 < finding_id <= MAX_ID:
        return None
    with store.session() as s:
        row = s.execute(_findings_select().where(FindingRow.id == finding_id)).first()
    return _finding_detail(*row) if row is not None else None


def findings(
    store: Store,
    *,
    model: str | None = None,
    provider: str | None = None,
    verdict: str | None = None,
    round_id: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Page[FindingDetail]:
    """Findings, newest first (by their round's start: a recomputed old round stays old),
    filtered."""
    limit = _limit(limit)
    if not _storable(model, provider, verdict, round_id):
        return Page(items=[], next_cursor=None)
    stmt = _findings_select()
    for column, value in (
        (FindingRow.model, model),
        (FindingRow.provider, provider),
        (FindingRow.verdict, verdict),
        (FindingRow.round_id, round_id),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    if cursor is not None:
        at, key = _time_cursor(cursor, "findings", int)
        stmt = stmt.where(_before(R.c.started_at, F.c.id, at, key))
    stmt = stmt.order_by(col(RoundRow.started_at).desc(), col(FindingRow.id).desc())
    stmt = stmt.limit(limit + 1)
    with store.session() as s:
        rows = s.execute(stmt).all()
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last_finding, last_round, _ = page[-1]
        next_cursor = _encode_cursor("findings", _utc_text(last_round.started_at), last_finding.id)
    return Page(items=[_finding_detail(*r) for r in page], next_cursor=next_cursor)
