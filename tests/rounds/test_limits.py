"""Per-provider limits, measured on the event loop's clock."""

from __future__ import annotations

import asyncio
import time

import pytest
from pydantic import ValidationError

from auditor.config import ProviderConfig
from auditor.records import CompletionRequest, Message, RequestParams
from auditor.rounds.limits import ProviderLimits, estimate_prompt_tokens, reservation


def cfg(**fields: object) -> ProviderConfig:
    return ProviderConfig(name="p", base_url="http://127.0.0.1:1/v1", model="m", **fields)


def req(text: str = "hello " * 40, max_tokens: int | None = 50) -> CompletionRequest:
    return CompletionRequest(
        probe_id="p",
        probe_hash="h",
        sample_index=0,
        messages=[Message(role="user", content=text)],
        params=RequestParams(max_tokens=max_tokens),
    )


async def test_requests_per_second_is_honoured() -> None:
    limits = ProviderLimits(cfg(requests_per_second=20, max_concurrency=50))
    start = time.monotonic()
    stamps: list[float] = []

    async def one() -> None:
        async with limits.slot(req()):
            stamps.append(time.monotonic() - start)

    await asyncio.gather(*(one() for _ in range(11)))
    # 11 requests at 20/s with a burst of 1: the last goes out after about 0.5 s, not before.
    assert max(stamps) >= 0.45
    assert max(stamps) < 1.5
    assert limits.stats.rate_wait_s > 0


async def test_concurrency_cap() -> None:
    limits = ProviderLimits(cfg(requests_per_second=1000, burst=100, max_concurrency=3))
    in_flight, peak = 0, 0

    async def one() -> None:
        nonlocal in_flight, peak
        async with limits.slot(req()):
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.02)
            in_flight -= 1

    await asyncio.gather(*(one() for _ in range(12)))
    assert peak == 3


async def test_tokens_are_reserved_then_reconciled() -> None:
    limits = ProviderLimits(
        cfg(requests_per_second=1000, burst=100, tokens_per_minute=6000, tokens_burst=6000)
    )
    r = req(max_tokens=500)
    expected = reservation(r, {})
    assert expected == estimate_prompt_tokens(r) + 500
    async with limits.slot(r) as held:
        assert held.tokens == expected
        held.settle(60)  # the provider reported far fewer: the difference is given back
    assert limits.stats.reconciled_tokens == 60 - expected
    # With the refund, eleven more such reservations fit in the minute's 6000 without waiting
    # for the bucket to drain (without it, the first reservation would still hold its tokens).
    start = time.monotonic()
    for _ in range(10):
        async with limits.slot(r) as held:
            held.settle(60)
    assert time.monotonic() - start < 1.0


async def test_token_bucket_makes_requests_wait() -> None:
    limits = ProviderLimits(
        cfg(requests_per_second=1000, burst=100, tokens_per_minute=1200, tokens_burst=1200)
    )
    r = req(text="x", max_tokens=190)  # 206 tokens reserved each; the bucket drains 20 a second
    assert reservation(r, {}) == 206
    start = time.monotonic()
    for _ in range(6):  # the sixth must wait for 6 * 206 - 1200 = 36 tokens to drain: 1.8 s
        async with limits.slot(r) as held:
            held.settle(None)  # no usage reported: the reservation stands
    assert time.monotonic() - start > 1.2
    assert limits.stats.token_wait_s > 1.2


def test_provider_max_tokens_param_counts_in_the_reservation() -> None:
    assert (
        reservation(req(max_tokens=10), {"max_tokens": 900}) == estimate_prompt_tokens(req()) + 900
    )


async def test_default_token_burst_is_a_tenth_of_the_minute() -> None:
    # 6000 a minute leak 100 a second; the bucket holds 600. After an idle spell a whole
    # minute's worth must not go out at once: in the first second, at most the burst plus a
    # second's rate (and the one reservation that tips it over).
    limits = ProviderLimits(cfg(requests_per_second=1000, burst=100, tokens_per_minute=6000))
    r = req(text="x", max_tokens=30)
    per_request = reservation(r, {})
    start, granted = time.monotonic(), 0
    while time.monotonic() - start < 1.0:
        async with limits.slot(r) as held:
            held.settle(None)
            granted += held.tokens
    assert granted >= 600  # the burst is there at once
    assert granted <= 600 + 100 + per_request


async def test_a_reservation_larger_than_the_bucket_is_clipped_then_charged() -> None:
    limits = ProviderLimits(
        cfg(requests_per_second=1000, burst=100, tokens_per_minute=6000, tokens_burst=50)
    )
    r = req(text="x", max_tokens=200)
    async with limits.slot(r) as held:
        assert held.tokens == 50  # waiting for more than the bucket holds would never end
        held.settle(120)  # the provider used 120: 70 more are charged
    assert limits.stats.reconciled_tokens == 70
    start = time.monotonic()
    async with limits.slot(r) as held:  # the bucket is over full: 1.2 s of leak at 100/s
        held.settle(0)
    assert time.monotonic() - start > 0.9


def test_tokens_burst_needs_tokens_per_minute() -> None:
    with pytest.raises(ValidationError, match="tokens_burst needs tokens_per_minute"):
        cfg(tokens_burst=100)
