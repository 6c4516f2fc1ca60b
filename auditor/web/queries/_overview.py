"""The overview: the models x providers grid of latest verdicts, and the incidents."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, select
from sqlalchemy.orm import Session
from sqlmodel import col

from auditor.alerts.incidents import info
from auditor.records import IncidentInfo
from auditor.report.render import round_info
from auditor.storage.repository import Store
from auditor.storage.tables import IncidentRow, RoundRow
from auditor.web.queries.common import INCIDENTS_SHOWN, F, P, _at, _diagnoses
from auditor.web.queries.paging import _limit
from auditor.web.views import Cell, Overview


def _latest_with_since(s: Session) -> list[Any]:
    """Each provider's latest finding (by its round's start, so recomputing an old round does
    not make it the latest) and `since`: the start of the earliest round of the unbroken run
    of that verdict which ends with it.

    The run begins with the first finding after the latest one with another verdict
    (`broke_at`), or with the first finding when there is none. All of it is read in a few
    index seeks per provider, however long its history: the latest finding from the end of
    its range in ix_findings_pair_order; the verdicts it has had by a loose scan of
    ix_findings_pair_verdict (one seek each) and the latest finding of each; the first after
    `broke_at` from ix_findings_pair_order again."""
    started = F.c.round_started_at
    pairs = select(P.c.model, P.c.name.label("provider")).where(P.c.kind == "provider").cte("pairs")

    def of(f: Any, pair: Any) -> ColumnElement[bool]:
        return and_(f.c.model == pair.c.model, f.c.provider == pair.c.provider)

    f1, f2, f3, f4, f5, lf = (F.alias(n) for n in ("f1", "f2", "f3", "f4", "f5", "lf"))
    latest_id = (
        select(f1.c.id)
        .where(of(f1, pairs))
        .order_by(f1.c.round_started_at.desc(), f1.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    latest = select(pairs.c.model, pairs.c.provider, latest_id.label("id")).cte("latest")

    # each verdict the provider has had: the smallest, then the next one up, until none
    first_verdict = select(func.min(f2.c.verdict)).where(of(f2, pairs)).scalar_subquery()
    verdicts = select(pairs.c.model, pairs.c.provider, first_verdict.label("verdict")).cte(
        "verdicts", recursive=True
    )
    next_verdict = (
        select(func.min(f3.c.verdict))
        .where(of(f3, verdicts), f3.c.verdict > verdicts.c.verdict)
        .scalar_subquery()
    )
    verdicts = verdicts.union_all(
        select(verdicts.c.model, verdicts.c.provider, next_verdict).where(
            verdicts.c.verdict.is_not(None)
        )
    )
    last_of_verdict = (
        select(func.max(f4.c.round_started_at))
        .where(of(f4, verdicts), f4.c.verdict == verdicts.c.verdict)
        .scalar_subquery()
    )
    last = (
        select(verdicts.c.model, verdicts.c.provider, verdicts.c.verdict)
        .add_columns(last_of_verdict.label("last_at"))
        .where(verdicts.c.verdict.is_not(None))
        .cte("last_of_verdict")
    )
    breaks = (
        select(latest.c.id, func.max(last.c.last_at).label("broke_at"))
        .select_from(latest)
        .join(lf, lf.c.id == latest.c.id)
        .join(last, and_(of(last, latest), last.c.verdict != lf.c.verdict))
        .group_by(latest.c.id)
        .cte("breaks")
    )
    first_after = (
        select(func.min(f5.c.round_started_at))
        .where(of(f5, F), f5.c.round_started_at > breaks.c.broke_at)
        .scalar_subquery()
    )
    first = select(func.min(f5.c.round_started_at)).where(of(f5, F)).scalar_subquery()
    since = case((breaks.c.broke_at.is_(None), first), else_=first_after)
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
                func.coalesce(since, started).label("since"),
            )
            .select_from(latest)
            .join(F, F.c.id == latest.c.id)
            .outerjoin(breaks, breaks.c.id == latest.c.id)
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
                .where(col(IncidentRow.state) == "open")
                .order_by(col(IncidentRow.opened_at).desc(), col(IncidentRow.id).desc())
            )
            .scalars()
            .all()
        )
        last = s.execute(
            select(RoundRow)
            .order_by(col(RoundRow.started_at).desc(), col(RoundRow.id).desc())
            .limit(1)
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
        col(IncidentRow.opened_at).desc(),
        col(IncidentRow.id).desc(),
    )
    if state is not None:
        stmt = stmt.where(col(IncidentRow.state) == state)
    with store.session() as s:
        rows = s.execute(stmt.limit(_limit(limit))).scalars().all()
    return [info(r) for r in rows]
