"""Which rounds and endpoints an export (or `auditor.results`) reads: the filters shared by
`auditor export`, the Parquet export and the notebook API, checked against the database.

Rounds are chosen by id, suite and the UTC day they started (`--since`/`--until`, whole days,
both ends included); endpoints by model and provider name (`reference` names the reference
engines). Every rejected filter raises a `UsageError` naming its option, which the CLI turns
into one line and exit code 2.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import select

from auditor.errors import UsageError
from auditor.records import as_utc
from auditor.storage.repository import Store
from auditor.storage.tables import ProviderRow, RoundRow, core_table

R = core_table(RoundRow).c
P = core_table(ProviderRow).c


def names(values: str | Iterable[str] | None) -> tuple[str, ...]:
    """A filter's values: repeated options and comma lists alike, blanks dropped, in order."""
    if values is None:
        return ()
    if isinstance(values, str):
        values = [values]
    out: list[str] = []
    for value in values:
        for part in str(value).split(","):
            part = part.strip()
            if part and part not in out:
                out.append(part)
    return tuple(out)


def parse_day(value: str | date | None, option: str) -> date | None:
    """An ISO date (YYYY-MM-DD); a `datetime` is refused, as days are what exports hold."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        raise UsageError(f"{option}: a date (YYYY-MM-DD), not a time: {value.isoformat()!r}")
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise UsageError(f"{option}: not an ISO date (YYYY-MM-DD): {value!r}") from None


@dataclass(frozen=True)
class Filters:
    """What to export: every field empty or None means everything."""

    rounds: tuple[str, ...] = ()
    since: date | None = None
    until: date | None = None
    models: tuple[str, ...] = ()
    providers: tuple[str, ...] = ()
    suites: tuple[str, ...] = ()

    @classmethod
    def parse(
        cls,
        round: str | Iterable[str] | None = None,
        since: str | date | None = None,
        until: str | date | None = None,
        model: str | Iterable[str] | None = None,
        provider: str | Iterable[str] | None = None,
        suite: str | Iterable[str] | None = None,
    ) -> Filters:
        """Filters as the CLI and `auditor.results` take them; bad values raise `UsageError`."""
        first, last = parse_day(since, "--since"), parse_day(until, "--until")
        if first is not None and last is not None and first > last:
            raise UsageError(f"--since: {first} is after --until {last}")
        return cls(names(round), first, last, names(model), names(provider), names(suite))

    @property
    def empty(self) -> bool:
        return self == Filters()

    def window(self) -> tuple[datetime | None, datetime | None]:
        """[start, end) in UTC of the days selected."""
        start = datetime.combine(self.since, time(), UTC) if self.since else None
        end = datetime.combine(self.until + timedelta(days=1), time(), UTC) if self.until else None
        return start, end


@dataclass(frozen=True)
class RoundInfo:
    id: str
    suite: str
    started_at: datetime  # UTC, aware

    @property
    def day(self) -> date:
        return self.started_at.date()


@dataclass(frozen=True)
class Endpoint:
    id: int
    model: str
    name: str
    kind: str  # provider | reference


@dataclass
class Selection:
    """The rounds (by start, then id) and endpoints the filters chose."""

    filters: Filters
    rounds: list[RoundInfo]
    endpoints: dict[int, Endpoint] = field(default_factory=dict)

    def days(self) -> dict[date, list[RoundInfo]]:
        """The selected rounds by the UTC day they started, days in order."""
        out: dict[date, list[RoundInfo]] = defaultdict(list)
        for r in self.rounds:
            out[r.day].append(r)
        return dict(sorted(out.items()))

    def models(self) -> list[str]:
        return sorted({e.model for e in self.endpoints.values()})

    def endpoints_of(self, model: str) -> list[Endpoint]:
        return sorted((e for e in self.endpoints.values() if e.model == model), key=lambda e: e.id)


def select_rounds(store: Store, filters: Filters) -> Selection:
    """The rounds and endpoints `filters` choose; an id, model, provider or suite the database
    does not hold raises a `UsageError` naming its option."""
    start, end = filters.window()
    with store.engine.connect() as conn:
        if filters.rounds:
            known = set(conn.execute(select(R.id).where(R.id.in_(filters.rounds))).scalars())
            missing = [r for r in filters.rounds if r not in known]
            if missing:
                raise UsageError(f"--round: no round {missing[0]!r} in the database")
        if filters.suites:
            known = set(conn.execute(select(R.suite).where(R.suite.in_(filters.suites))).scalars())
            missing = [s for s in filters.suites if s not in known]
            if missing:
                raise UsageError(f"--suite: no round of suite {missing[0]!r} in the database")
        stmt = select(R.id, R.suite, R.started_at).order_by(R.started_at, R.id)
        if filters.rounds:
            stmt = stmt.where(R.id.in_(filters.rounds))
        if filters.suites:
            stmt = stmt.where(R.suite.in_(filters.suites))
        if start is not None:
            stmt = stmt.where(R.started_at >= start)
        if end is not None:
            stmt = stmt.where(R.started_at < end)
        rounds = [RoundInfo(i, s, as_utc(t)) for i, s, t in conn.execute(stmt)]
        found = conn.execute(select(P.id, P.model, P.name, P.kind))
        endpoints = [Endpoint(i, m, n, k) for i, m, n, k in found]
    for option, wanted, have in (
        ("--model", filters.models, {e.model for e in endpoints}),
        ("--provider", filters.providers, {e.name for e in endpoints}),
    ):
        missing = [w for w in wanted if w not in have]
        if missing:
            what = option.removeprefix("--")
            raise UsageError(f"{option}: no {what} {missing[0]!r} in the database")
    chosen = {
        e.id: e
        for e in endpoints
        if (not filters.models or e.model in filters.models)
        and (not filters.providers or e.name in filters.providers)
    }
    return Selection(filters, rounds, chosen)
