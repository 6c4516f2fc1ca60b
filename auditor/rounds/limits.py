"""Per-provider limits: requests per second, tokens per minute and a concurrency cap.

Tokens per minute are reserved before a request is sent (an estimate of the prompt plus the
request's max_tokens) and reconciled with the usage the provider reports: the difference is
charged or refunded to the bucket, so the achieved rate follows real consumption.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiolimiter import AsyncLimiter

from auditor.config import ProviderConfig
from auditor.records import CompletionRequest

DEFAULT_MAX_TOKENS = 256


class RefundableLimiter(AsyncLimiter):
    """An aiolimiter leaky bucket that can also give capacity back.

    aiolimiter has no public refund; the bucket level is `_level`, drained by `_leak()`.
    """

    def adjust(self, delta: float) -> None:
        """Add (delta > 0, without waiting) or give back (delta < 0) capacity."""
        self._leak()
        self._level = max(0.0, self._level + delta)


def estimate_prompt_tokens(request: CompletionRequest) -> int:
    """A cheap upper-leaning estimate: about 4 characters a token plus per-message overhead."""
    chars = sum(len(m.content or "") for m in request.messages)
    return chars // 4 + 8 * len(request.messages) + 8


def reservation(request: CompletionRequest, extra_params: dict[str, object]) -> int:
    max_tokens = request.params.max_tokens
    override = extra_params.get("max_tokens")
    if isinstance(override, int):
        max_tokens = override
    return estimate_prompt_tokens(request) + (max_tokens or DEFAULT_MAX_TOKENS)


def token_bucket(config: ProviderConfig) -> RefundableLimiter | None:
    """A bucket leaking `tokens_per_minute / 60` a second that holds `tokens_burst`.

    Not a whole minute's worth: after an idle spell such a bucket lets a minute's tokens out
    at once and then the rate on top, twice the limit in the first minute for a provider that
    counts over a rolling minute. With a tenth, any 60 s carry at most 1.1x the limit and any
    second at most the second's rate plus the burst.
    """
    tpm = config.tokens_per_minute
    if not tpm:
        return None
    capacity = config.tokens_burst or max(1, tpm // 10)
    return RefundableLimiter(capacity, capacity * 60.0 / tpm)


@dataclass
class LimitStats:
    """What the limits cost: seconds spent waiting for each limit (for metrics and benches)."""

    rate_wait_s: float = 0.0
    token_wait_s: float = 0.0
    concurrency_wait_s: float = 0.0
    reserved_tokens: int = 0
    reconciled_tokens: int = 0


@dataclass
class ProviderLimits:
    config: ProviderConfig
    stats: LimitStats = field(default_factory=LimitStats)

    def __post_init__(self) -> None:
        rps = self.config.requests_per_second
        burst = self.config.burst
        # aiolimiter: at most `max_rate` units per `time_period`; burst B at R/s -> B per B/R s.
        self._rate = AsyncLimiter(burst, burst / rps)
        self._tokens = token_bucket(self.config)
        self._slots = asyncio.Semaphore(self.config.max_concurrency)

    @asynccontextmanager
    async def slot(self, request: CompletionRequest) -> AsyncIterator[Reservation]:
        """Hold a concurrency slot, a request token and the token reservation for one call."""
        t0 = time.monotonic()
        async with self._slots:
            t1 = time.monotonic()
            reserved = 0
            if self._tokens is not None:
                # more than the bucket holds could never be granted: the rest is charged
                # when the provider reports its usage (`reconcile`)
                reserved = min(reservation(request, self.config.params), int(self._tokens.max_rate))
                await self._tokens.acquire(reserved)
            t2 = time.monotonic()
            await self._rate.acquire()
            t3 = time.monotonic()
            self.stats.concurrency_wait_s += t1 - t0
            self.stats.token_wait_s += t2 - t1
            self.stats.rate_wait_s += t3 - t2
            self.stats.reserved_tokens += reserved
            held = Reservation(self, reserved, waited_s=t3 - t0)
            yield held

    def reconcile(self, reserved: int, actual: int | None) -> None:
        if self._tokens is None or actual is None:
            return
        # An overshoot is charged without waiting: the next request waits for it instead.
        self.stats.reconciled_tokens += actual - reserved
        self._tokens.adjust(actual - reserved)


@dataclass
class Reservation:
    limits: ProviderLimits
    tokens: int
    waited_s: float = 0.0  # for a slot, the request's token reservation and its rate token

    def settle(self, actual_tokens: int | None) -> None:
        self.limits.reconcile(self.tokens, actual_tokens)
