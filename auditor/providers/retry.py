"""When to retry a provider request and how long to wait: pure functions, no I/O, no clock.

Backoff is exponential with full jitter (AWS architecture blog, "Exponential Backoff And
Jitter"): the n-th wait is uniform in [0, min(cap, base * 2**(n-1))], which spreads the retries
of many concurrent requests instead of synchronising them into bursts. A server's own
`Retry-After` is a floor: we never come back sooner than it asked.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from auditor.config import RetryPolicy

_SECONDS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*$")


def is_retryable_status(status: int) -> bool:
    """429 and every 5xx may succeed later; every other status is the final answer."""
    return status == 429 or 500 <= status <= 599


def backoff_delay(attempt: int, policy: RetryPolicy, rng: random.Random) -> float:
    """Full-jitter wait after the `attempt`-th (1-based) failed attempt."""
    exponent = min(max(attempt - 1, 0), 64)
    ceiling = min(policy.backoff_max_s, policy.backoff_base_s * 2**exponent)
    return rng.uniform(0.0, ceiling)


def parse_retry_after(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds the server asked us to wait, or None if it did not ask (or asked illegibly).

    Reads `retry-after-ms` (an OpenAI extension, milliseconds) first, then `Retry-After`
    as delta-seconds or an HTTP-date. A date in the past means "now" (0 seconds).
    """
    millis = headers.get("retry-after-ms")
    if millis is not None and (match := _SECONDS.match(millis)):
        return float(match.group(1)) / 1000.0
    value = headers.get("retry-after")
    if value is None:
        return None
    if match := _SECONDS.match(value):
        return float(match.group(1))
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def retry_wait(
    attempt: int, policy: RetryPolicy, rng: random.Random, retry_after: float | None
) -> float:
    """The wait before the next attempt: the jittered backoff, raised to `Retry-After`."""
    jittered = backoff_delay(attempt, policy, rng)
    return jittered if retry_after is None else max(retry_after, jittered)


def may_wait(elapsed_s: float, wait_s: float, policy: RetryPolicy) -> bool:
    """Whether a wait may start: it must end within the request's total retry budget."""
    return elapsed_s + wait_s <= policy.max_total_s
