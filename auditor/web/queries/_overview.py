"""The overview: the models x providers grid of latest verdicts, and the incidents."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from auditor.incidents import info
from auditor.records import IncidentInfo
from auditor.report import round_info
from auditor.storage.repository import Store
from auditor.storage.tables import IncidentRow, RoundRow
from auditor.web.queries.common import INCIDENTS_SHOWN, F, P, R, _at, _diagnoses
from auditor.web.queries.paging import _limit
from auditor.web.views import Cell, Overview


def _latest_with_since(s: Session) -> list[Any]:
    """Each (model, provider)'s latest finding (by its round's start, so recomputing an old
    round does not make it the latest) and `since`: the start of the earliest round of the
    unbroken run of that verdict which ends with it.

    The run begins right after the latest finding with another verdict (`broke_at`), or at
    the first finding when there is none: two grouped passes over findings, not a walk."""
    ranked = (
        select(
            F.c.id,
            F.c.model,
            F.c.provider,
            F.c.verdict,
            R.c.started_at,
            func.row_number()
            .over(
                partition_by=(F.c.model, F.c.provider),
                order_by=(R.c.started_at.desc(), F.c.id.desc()),
            )
            .label("rn"),
        )
        .join(R, R.c.id == F.c.round_id)
        .cte("ranked")
    )
    latest = select(ranked).where(ranked.c.rn == 1).cte("latest")

    def same_pair(f: Any) -> ColumnElement[bool]:
        return and_(f.c.model == latest.c.model, f.c.provider == latest.c.provider)

    f2, r2, f3, r3 = F.alias("f2"), R.alias("r2"), F.alias("f3"), R.alias("r3")
    breaks = (
        select(latest.c.id, func.max(r2.c.started_at).label("broke_at"))
        .select_from(latest)
        .join(f2, and_(same_pair(f2), f2.c.verdict != latest.c.verdict))
        .join(r2, r2.c.id == f2.c.round_id)
        .group_by(latest.c.id)
        .cte("breaks")
    )
    since = (
        select(latest.c.id, func.min(r3.c.started_at).label("since"))
        .select_from(latest)
        .join(f3, same_pair(f3))
        .join(r3, r3.c.id == f3.c.round_id)
        .outerjoin(breaks, breaks.c.id == latest.c.id)
        .where(or_(breaks.c.broke_at.is_(None), r3.c.started_at > breaks.c.broke_at))
        .group_by(latest.c.id)
        .cte("since")
    )
    return list(
        s.execute(
            select(
                F.c.id,
                F.c.model,
                F.c.provider,
                F.c.verdict,
                F.c.severity,
                F.c.diagnoses,
                F.c.round_id,
                F.c.created_at,
                # (a tie in start times with another verdict leaves no later round: its own)
                func.coalesce(since.c.since, latest.c.started_at).label("since"),
            )
            .select_from(latest)
            .join(F, F.c.id == latest.c.id)
            .outerjoin(since, since.c.id == latest.c.id)
        ).all()
    )


def overview(store: Store) -> Overview:
    """The models x providers grid (each provider's latest finding), the open incidents and
    the last round."""
    with store.session() as s:
        providers = s.execute(
            select(P.c.id, P.c.model, P.c.name, P.c.trusted)
            .where(P.c.kind == "provider")
            .order_by(P.c.model, P.c.name)
        ).all()
        latest = {(r.model, r.provider): r for r in _latest_with_since(s)}
        open_rows = (
            s.execute(
                select(IncidentRow)
                .where(IncidentRow.state == "open")
                .order_by(IncidentRow.opened_at.desc(), IncidentRow.id.desc())  # type: ignore[attr-defined,union-attr]
            )
            .scalars()
            .all()
        )
        last = s.execute(
            select(RoundRow).order_by(RoundRow.started_at.desc(), RoundRow.id.desc()).limit(1)  # type: ignore[attr-defined]
        ).scalar()
    incidents = [info(r) for r in open_rows]
    by_pair = {(i.model, i.provider): i for i in reversed(incidents) if i.kind == "provider"}
    cells = []
    for p in providers:
        f = latest.get((p.model, p.name))
        cells.append(
            Cell(
                model=p.model,
                provider=p.name,
                provider_id=p.id,
                trusted=bool(p.trusted),
                verdict=f.verdict if f else None,
                severity=f.severity if f else None,
                diagnoses=_diagnoses(f.diagnoses) if f else [],
                round_id=f.round_id if f else None,
                finding_id=f.id if f else None,
                assessed_at=_at(f.created_at) if f else None,
                since=_at(f.since) if f else None,
                open_incident=by_pair.get((p.model, p.name)),
            )
        )
    return Overview(
        models=sorted({c.model for c in cells}),
        providers=sorted({c.provider for c in cells}),
        cells=cells,
        open_incidents=incidents,
        last_round=round_info(last) if last else None,
    )


def incidents(
    store: Store, state: str | None = None, limit: int = INCIDENTS_SHOWN
) -> list[IncidentInfo]:
    """Incidents, newest first (`state`: open or resolved; None: both)."""
    stmt = select(IncidentRow).order_by(
        IncidentRow.opened_at.desc(),  # type: ignore[attr-defined]
        IncidentRow.id.desc(),  # type: ignore[union-attr]
    )
    if state is not None:
        stmt = stmt.where(IncidentRow.state == state)
    with store.session() as s:
        rows = s.execute(stmt.limit(_limit(limit))).scalars().all()
    return [info(r) for r in rows]
