"""Pure retry arithmetic: which statuses retry, backoff bounds, Retry-After parsing."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auditor.config import RetryPolicy
from auditor.providers.retry import (
    backoff_delay,
    is_retryable_status,
    may_wait,
    parse_retry_after,
    retry_wait,
)

NOW = datetime(2025, 4, 7, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504, 599])
def test_retryable_statuses(status: int) -> None:
    assert is_retryable_status(status)


@pytest.mark.parametrize("status", [200, 301, 400, 401, 403, 404, 408, 422, 600])
def test_final_statuses(status: int) -> None:
    assert not is_retryable_status(status)


@given(
    attempt=st.integers(min_value=1, max_value=200),
    base=st.floats(min_value=0.001, max_value=10),
    cap=st.floats(min_value=0.001, max_value=100),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_backoff_is_full_jitter_within_the_exponential_ceiling(
    attempt: int, base: float, cap: float, seed: int
) -> None:
    policy = RetryPolicy(backoff_base_s=base, backoff_max_s=cap)
    delay = backoff_delay(attempt, policy, random.Random(seed))
    assert 0.0 <= delay <= min(cap, base * 2 ** min(attempt - 1, 64))


def test_backoff_ceiling_doubles_then_caps() -> None:
    policy = RetryPolicy(backoff_base_s=1.0, backoff_max_s=5.0)
    rng = random.Random(1)
    maxima = [max(backoff_delay(n, policy, rng) for _ in range(2000)) for n in (1, 2, 3, 4)]
    assert maxima[0] <= 1.0 < maxima[1] <= 2.0 < maxima[2] <= 4.0 < maxima[3] <= 5.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": " 120 "}, 120.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after-ms": "soon", "retry-after": "9"}, 9.0),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "-5"}, None),
        ({"retry-after": ""}, None),
        ({}, None),
    ],
)
def test_parse_retry_after_seconds(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers, now=NOW) == expected


def test_parse_retry_after_http_date() -> None:
    future = format_datetime(NOW + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after({"retry-after": future}, now=NOW) == pytest.approx(30.0)


def test_parse_retry_after_past_date_means_now() -> None:
    past = format_datetime(NOW - timedelta(hours=1), usegmt=True)
    assert parse_retry_after({"retry-after": past}, now=NOW) == 0.0


def test_retry_after_is_a_floor_for_the_jittered_wait() -> None:
    policy = RetryPolicy(backoff_base_s=0.5, backoff_max_s=20.0)
    rng = random.Random(0)
    assert retry_wait(1, policy, rng, 3.0) == 3.0
    assert 0.0 <= retry_wait(1, policy, rng, None) <= 0.5
    assert retry_wait(10, RetryPolicy(backoff_base_s=100, backoff_max_s=100), rng, 0.0) >= 0.0


def test_may_wait_respects_the_total_budget() -> None:
    policy = RetryPolicy(max_total_s=10.0)
    assert may_wait(4.0, 6.0, policy)
    assert not may_wait(4.0, 6.5, policy)
