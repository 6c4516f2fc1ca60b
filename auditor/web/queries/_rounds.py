"""Rounds: the list, newest first, and one round's findings and per-endpoint totals."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from auditor.records import as_utc
from auditor.report.render import round_info
from auditor.storage.repository import Store
from auditor.storage.tables import RoundRow
from auditor.web.queries.common import F, P, R, S, _at, _diagnoses
from auditor.web.queries.paging import (
    _before,
    _encode_cursor,
    _limit,
    _storable,
    _time_cursor,
    _utc_text,
)
from auditor.web.views import Page, ProviderTotals, RoundDetail, RoundFinding, RoundSummary


def rounds(store: Store, limit: int = 50, cursor: str | None = None) -> Page[RoundSummary]:
    """Rounds, newest first. Requests, errors and verdicts come from the findings; a round
    with none yet (running) counts its providers' samples instead."""
    limit = _limit(limit)
    stmt = (
        select(R.c.id, R.c.suite, R.c.status, R.c.started_at, R.c.finished_at)
        .order_by(R.c.started_at.desc(), R.c.id.desc())
        .limit(limit + 1)
    )
    if cursor is not None:
        at, key = _time_cursor(cursor, "rounds", str)
        stmt = stmt.where(_before(R.c.started_at, R.c.id, at, key))
    with store.session() as s:
        rows = s.execute(stmt).all()
        page = rows[:limit]
        ids = [r.id for r in page]
        counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        verdicts: dict[str, dict[str, int]] = defaultdict(dict)
        if ids:
            for round_id, verdict, n, requests, errors in s.execute(
                select(
                    F.c.round_id,
                    F.c.verdict,
                    func.count(),
                    func.coalesce(func.sum(F.c.requests), 0),
                    func.coalesce(func.sum(F.c.errors), 0),
                )
                .where(F.c.round_id.in_(ids))
                .group_by(F.c.round_id, F.c.verdict)
            ):
                verdicts[round_id][verdict] = n
                counts[round_id][0] += int(requests)
                counts[round_id][1] += int(errors)
        unassessed = [i for i in ids if i not in verdicts]
        if unassessed:
            for round_id, requests, errors in s.execute(
                select(
                    S.c.round_id,
                    func.count(),
                    func.coalesce(func.sum(case((S.c.ok, 0), else_=1)), 0),
                )
                .join(P, P.c.id == S.c.provider_id)
                .where(S.c.round_id.in_(unassessed), P.c.kind == "provider")
                .group_by(S.c.round_id)
            ):
                counts[round_id] = [int(requests), int(errors)]
    items = [
        RoundSummary(
            id=r.id,
            suite=r.suite,
            status=r.status,
            started_at=as_utc(r.started_at),
            finished_at=_at(r.finished_at),
            requests=counts[r.id][0],
            errors=counts[r.id][1],
            verdicts=dict(sorted(verdicts[r.id].items())),
        )
        for r in page
    ]
    more = len(rows) > limit
    return Page(
        items=items,
        next_cursor=(
            _encode_cursor("rounds", _utc_text(page[-1].started_at), page[-1].id) if more else None
        ),
    )


def _round_totals(s: Session, round_id: str) -> list[ProviderTotals]:
    """Requests, errors by class, tokens, cost and mean latency per endpoint of a round
    (the reference too): one grouped pass over the round's samples."""
    rows = s.execute(
        select(
            S.c.provider_id,
            S.c.error_class,
            func.count(),
            func.coalesce(func.sum(S.c.total_tokens), 0),
            func.sum(S.c.cost),
            func.sum(S.c.latency_ms),
            func.count(S.c.latency_ms),
        )
        .where(S.c.round_id == round_id)
        .group_by(S.c.provider_id, S.c.error_class)
    ).all()
    if not rows:
        return []
    names = {
        p.id: p
        for p in s.execute(
            select(P.c.id, P.c.model, P.c.name, P.c.kind).where(P.c.id.in_({r[0] for r in rows}))
        )
    }
    acc: dict[int, dict[str, Any]] = {}
    for provider_id, error_class, n, tokens, cost, latency_sum, latency_n in rows:
        t = acc.setdefault(
            provider_id,
            {
                "requests": 0,
                "errors": 0,
                "tokens": 0,
                "cost": None,
                "by_class": {},
                "lat": 0.0,
                "lat_n": 0,
            },
        )
        t["requests"] += n
        t["tokens"] += int(tokens)
        t["lat"] += float(latency_sum or 0.0)
        t["lat_n"] += int(latency_n)
        if cost is not None:
            t["cost"] = (t["cost"] or 0.0) + float(cost)
        if error_class is not None:
            t["errors"] += n
            t["by_class"][error_class] = n
    totals = [
        ProviderTotals(
            model=names[pid].model,
            provider=names[pid].name,
            kind=names[pid].kind,
            requests=t["requests"],
            errors=t["errors"],
            tokens=t["tokens"],
            latency_ms_mean=t["lat"] / t["lat_n"] if t["lat_n"] else None,
            errors_by_class=dict(sorted(t["by_class"].items())),
            cost=t["cost"],
        )
        for pid, t in acc.items()
    ]
    return sorted(totals, key=lambda t: (t.model, t.kind != "reference", t.provider))


def round_detail(store: Store, round_id: str) -> RoundDetail | None:
    """A round: its findings (with the provider's id, for links) and per-endpoint totals."""
    if not _storable(round_id):
        return None
    with store.session() as s:
        row = s.get(RoundRow, round_id)
        if row is None:
            return None
        found = s.execute(
            select(
                F.c.id,
                F.c.model,
                F.c.provider,
                P.c.id.label("provider_id"),
                F.c.verdict,
                F.c.severity,
                F.c.diagnoses,
                F.c.requests,
                F.c.errors,
                F.c.tokens,
            )
            .outerjoin(P, and_(P.c.model == F.c.model, P.c.name == F.c.provider))
            .where(F.c.round_id == round_id)
            .order_by(F.c.model, F.c.provider)
        ).all()
        totals = _round_totals(s, round_id)
    return RoundDetail(
        round=round_info(row),
        findings=[
            RoundFinding.model_validate({**f._mapping, "diagnoses": _diagnoses(f.diagnoses)})
            for f in found
        ],
        totals=totals,
    )
