"""Figures that live in the database, read when Prometheus scrapes `/metrics`.

Counters and histograms of the process are in `auditor.operations.metrics`; these gauges are derived
from the tables at scrape time instead, so they are right whichever process (a daemon, a
one-off `auditor run`, a standby) wrote the rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlmodel import col

from auditor.records import as_utc
from auditor.storage.repository import Store
from auditor.storage.tables import FindingRow, IncidentRow, ProviderRow, RoundRow

SEVERITIES = ("info", "warning", "critical")
# A finding is "open" while it is the provider's latest and says something is wrong.
OPEN_VERDICTS = ("deviant", "unavailable")


@dataclass
class DatabaseState:
    open_incidents: dict[str, int] = field(default_factory=dict)  # severity -> count
    open_findings: dict[str, int] = field(default_factory=dict)  # severity -> count
    last_complete_round: dict[str, datetime] = field(default_factory=dict)  # suite -> finished


def read_state(store: Store) -> DatabaseState:
    """Three small aggregate queries, the same on SQLite and PostgreSQL."""
    state = DatabaseState()
    with store.session() as s:
        rows = s.execute(
            select(col(IncidentRow.severity), func.count())
            .where(col(IncidentRow.state) == "open")
            .group_by(IncidentRow.severity)
        ).all()
        state.open_incidents = {severity: n for severity, n in rows}

        # The latest finding of each (model, provider), by its round's start: recomputing an
        # old round (`auditor compare`) writes newer rows that must not count as the latest.
        # One seek per provider at the end of its range of ix_findings_pair_order.
        pairs = (
            select(col(ProviderRow.model), col(ProviderRow.name))
            .where(col(ProviderRow.kind) == "provider")
            .subquery()
        )
        latest_id = (
            select(col(FindingRow.id))
            .where(col(FindingRow.model) == pairs.c.model, col(FindingRow.provider) == pairs.c.name)
            .order_by(col(FindingRow.round_started_at).desc(), col(FindingRow.id).desc())
            .limit(1)
            .scalar_subquery()
        )
        latest = select(latest_id.label("id")).select_from(pairs).subquery()
        rows = s.execute(
            select(col(FindingRow.severity), func.count())
            .join(latest, col(FindingRow.id) == latest.c.id)
            .where(col(FindingRow.verdict).in_(OPEN_VERDICTS))
            .group_by(FindingRow.severity)
        ).all()
        state.open_findings = {severity: n for severity, n in rows}

        rows = s.execute(
            select(col(RoundRow.suite), func.max(col(RoundRow.finished_at)))
            .where(col(RoundRow.status) == "complete", col(RoundRow.finished_at).is_not(None))
            .group_by(RoundRow.suite)
        ).all()
        state.last_complete_round = {suite: as_utc(at) for suite, at in rows if at is not None}
    return state


def families(state: DatabaseState | None) -> list[Metric]:
    """The gauges for a state read at scrape time; None when the database could not be read
    (then only `auditor_database_up 0`, rather than stale or zero figures)."""
    up = GaugeMetricFamily(
        "auditor_database_up", "1 when the scrape-time database queries succeeded, else 0."
    )
    up.add_metric([], 0 if state is None else 1)
    if state is None:
        return [up]
    incidents = GaugeMetricFamily(
        "auditor_open_incidents", "Incidents in state open, by severity.", labels=["severity"]
    )
    _by_severity(incidents, state.open_incidents)
    findings = GaugeMetricFamily(
        "auditor_open_findings",
        "Providers whose latest finding is deviant or unavailable, by severity.",
        labels=["severity"],
    )
    _by_severity(findings, state.open_findings)
    last = GaugeMetricFamily(
        "auditor_last_successful_round_timestamp_seconds",
        "When the latest round with status complete finished (Unix time), by suite.",
        labels=["suite"],
    )
    for suite, at in sorted(state.last_complete_round.items()):
        last.add_metric([suite], at.timestamp())
    return [up, incidents, findings, last]


def _by_severity(family: GaugeMetricFamily, counts: dict[str, int]) -> None:
    # Every known severity is always present (0 included), so alert rules need no absent().
    for severity in (*SEVERITIES, *sorted(set(counts) - set(SEVERITIES))):
        family.add_metric([severity], counts.get(severity, 0))


class Combined:
    """What one scrape exposes: the process registry's metrics, then the database's."""

    def __init__(self, registries: Iterable[Collector], extra: list[Metric]) -> None:
        self.registries = list(registries)
        self.extra = extra

    def collect(self) -> Iterator[Metric]:
        for registry in self.registries:
            yield from registry.collect()
        yield from self.extra
