"""How the dashboard's pages show values: times, counts, statistics, money, verdicts.

Pure functions (`fmt_ago` reads the clock unless given `now`); a value that is not there, or
a number that is not finite, shows as `MISSING` (`fmt_iso`: empty). The pages register them
as Jinja filters, and `outside_band` as a template global."""

from __future__ import annotations

import math
from datetime import datetime

from auditor.records import as_utc, utcnow

MISSING = "\u2013"  # an en dash, for a value that is not there
VERDICTS = ("consistent", "deviant", "unavailable", "inconclusive")


def fmt_time(value: datetime | None) -> str:
    return MISSING if value is None else as_utc(value).strftime("%Y-%m-%d %H:%M UTC")


def fmt_iso(value: datetime | None) -> str:
    return "" if value is None else as_utc(value).isoformat()


def fmt_ago(value: datetime | None, now: datetime | None = None) -> str:
    """How long ago, coarsely: minutes under an hour, hours under two days, then days."""
    if value is None:
        return MISSING
    seconds = ((now or utcnow()) - as_utc(value)).total_seconds()
    if seconds < 0:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 48 * 3600:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86400)} d ago"


def fmt_duration(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return MISSING
    seconds = int((as_utc(end) - as_utc(start)).total_seconds())
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min" + (f" {seconds % 60} s" if seconds % 60 else "")
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def fmt_int(value: int | None) -> str:
    return MISSING if value is None else f"{value:,}"


def fmt_num(value: float | None, digits: int = 4) -> str:
    """A statistic: a few significant digits."""
    value = _finite(value)
    return MISSING if value is None else f"{value:.{digits}g}"


def fmt_pct(value: float | None, digits: int = 1) -> str:
    value = _finite(value)
    return MISSING if value is None else f"{value * 100:.{digits}f}%"


def fmt_ms(value: float | None) -> str:
    value = _finite(value)
    return MISSING if value is None else f"{value:,.0f} ms"


def fmt_p(value: float | None) -> str:
    value = _finite(value)
    if value is None:
        return MISSING
    return "< 0.0001" if value < 0.0001 else f"{value:.4f}"


def fmt_cost(value: float | None) -> str:
    value = _finite(value)
    return MISSING if value is None else f"${value:,.4f}"


def verdict_class(verdict: str | None) -> str:
    return f"v-{verdict}" if verdict in VERDICTS else "v-none"


def in_verdict_order(counts: dict[str, int]) -> list[tuple[str, int]]:
    """Verdict counts, the worst first."""
    order = {v: i for i, v in enumerate(("deviant", "unavailable", "inconclusive", "consistent"))}
    return sorted(counts.items(), key=lambda item: (order.get(item[0], len(order)), item[0]))


def outside_band(statistic: float | None, low: float | None, high: float | None) -> str | None:
    """'above' or 'below' when the statistic falls outside the honest range, else None."""
    value, low, high = _finite(statistic), _finite(low), _finite(high)
    if value is None:
        return None
    if high is not None and value > high:
        return "above"
    if low is not None and value < low:
        return "below"
    return None
