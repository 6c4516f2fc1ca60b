"""Providers: the endpoints as they may be shown, and one provider's history of rounds."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import func, select
from sqlmodel import col

from auditor.alerts.incidents import info
from auditor.records import Capability, ContextWindow, UpstreamShare, as_utc
from auditor.storage.repository import Store
from auditor.storage.tables import IncidentRow
from auditor.web.queries.common import INCIDENTS_SHOWN, F, P, S
from auditor.web.queries.paging import MAX_ID, _limit
from auditor.web.views import (
    CapabilityReading,
    LadderReading,
    ProviderHistory,
    ProviderInfo,
    ProviderPoint,
    TestPoint,
    UpstreamReading,
)


def public_url(url: str | None) -> str | None:
    """A base URL as it may be shown: no user name or password, no query string (a `${VAR}`
    substituted into providers.yaml may have put a key there)."""
    if not url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host + (f":{port}" if port is not None else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _provider_info(row: Any) -> ProviderInfo:
    return ProviderInfo(
        id=row.id,
        model=row.model,
        name=row.name,
        kind=row.kind,
        base_url=public_url(row.base_url),
        model_id=row.model_id,
        trusted=bool(row.trusted),
    )


def providers(store: Store, kind: str | None = None) -> list[ProviderInfo]:
    """Every endpoint the auditor has sent to, by model and name (no configuration shown)."""
    stmt = select(P.c.id, P.c.model, P.c.name, P.c.kind, P.c.base_url, P.c.model_id, P.c.trusted)
    if kind is not None:
        stmt = stmt.where(P.c.kind == kind)
    with store.session() as s:
        rows = s.execute(stmt.order_by(P.c.model, P.c.kind, P.c.name)).all()
    return [_provider_info(r) for r in rows]


def _test_points(
    round_id: str, at: datetime, tests: list[dict[str, Any]] | None
) -> list[tuple[str, TestPoint]]:
    """A round's tests as points of their series; a test the round could not run has none."""
    points = []
    for t in tests or []:
        if t.get("status") == "not_available" or "name" not in t:
            continue
        low, high = [*(t.get("honest_range") or []), None, None][:2]
        points.append(
            (
                t["name"],
                TestPoint(
                    round_id=round_id,
                    at=at,
                    statistic=t.get("statistic"),
                    p_value=t.get("p_value"),
                    effect=t.get("effect"),
                    honest_low=low,
                    honest_high=high,
                    n=int(t.get("n") or 0),
                ),
            )
        )
    return points


def provider_history(store: Store, provider_id: int, limit: int = 200) -> ProviderHistory | None:
    """The provider's last `limit` rounds, oldest first, and the latest context ladder,
    capability table and upstream breakdown among them."""
    limit = _limit(limit)
    if not 0 < provider_id <= MAX_ID:
        return None
    with store.session() as s:
        p = s.execute(
            select(
                P.c.id, P.c.model, P.c.name, P.c.kind, P.c.base_url, P.c.model_id, P.c.trusted
            ).where(P.c.id == provider_id)
        ).first()
        if p is None:
            return None
        # the newest end of the provider's range in ix_findings_pair_order, in round order
        found = s.execute(
            select(
                F.c.id,
                F.c.round_id,
                F.c.round_started_at.label("started_at"),
                F.c.verdict,
                F.c.severity,
                F.c.requests,
                F.c.errors,
                F.c.tokens,
                F.c.cost,
                F.c.tests,
                F.c.context_window,
                F.c.upstreams,
                F.c.capabilities,
            )
            .where(F.c.model == p.model, F.c.provider == p.name)
            .order_by(F.c.round_started_at.desc(), F.c.id.desc())
            .limit(limit)
        ).all()[::-1]
        latency: dict[str, float | None] = {}
        if found:
            latency = dict(
                s.execute(
                    select(S.c.round_id, func.avg(S.c.latency_ms))
                    .where(S.c.provider_id == provider_id)
                    .where(S.c.round_id.in_([f.round_id for f in found]))
                    .group_by(S.c.round_id)
                ).all()
            )
        incident_rows = (
            s.execute(
                select(IncidentRow)
                .where(
                    col(IncidentRow.model) == p.model,
                    col(IncidentRow.provider) == p.name,
                    col(IncidentRow.kind) == "provider",
                )
                .order_by(col(IncidentRow.opened_at).desc(), col(IncidentRow.id).desc())
                .limit(INCIDENTS_SHOWN)
            )
            .scalars()
            .all()
        )
    points, tests = [], defaultdict(list)
    ladder: LadderReading | None = None
    capabilities: CapabilityReading | None = None
    upstreams: UpstreamReading | None = None
    for f in found:
        at = as_utc(f.started_at)
        mean = latency.get(f.round_id)
        window = ContextWindow.model_validate(f.context_window) if f.context_window else None
        if window is not None:
            ladder = LadderReading(round_id=f.round_id, at=at, finding_id=f.id, window=window)
        if f.capabilities:
            capabilities = CapabilityReading(
                round_id=f.round_id,
                at=at,
                finding_id=f.id,
                capabilities=[Capability.model_validate(c) for c in f.capabilities],
            )
        if f.upstreams:
            upstreams = UpstreamReading(
                round_id=f.round_id,
                at=at,
                finding_id=f.id,
                upstreams=[UpstreamShare.model_validate(u) for u in f.upstreams],
            )
        points.append(
            ProviderPoint(
                round_id=f.round_id,
                at=at,
                finding_id=f.id,
                verdict=f.verdict,
                severity=f.severity,
                requests=f.requests,
                errors=f.errors,
                error_rate=f.errors / f.requests if f.requests else None,
                tokens=f.tokens,
                cost=f.cost,
                latency_ms_mean=float(mean) if mean is not None else None,
                effective_window=window.effective if window else None,
            )
        )
        for name, point in _test_points(f.round_id, at, f.tests):
            tests[name].append(point)
    return ProviderHistory(
        provider=_provider_info(p),
        points=points,
        tests=dict(sorted(tests.items())),
        incidents=[info(r) for r in incident_rows],
        context_window=ladder,
        capabilities=capabilities,
        upstreams=upstreams,
    )
