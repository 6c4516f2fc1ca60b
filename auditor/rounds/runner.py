"""One round: send the budget policy's requests to every endpoint under its own limits, and
store each answer the moment it arrives.

Each endpoint (a provider or the reference) has `max_concurrency` workers drawing its
requests from the plan one at a time, so a slow provider never holds up a fast one and no
round is ever held in memory whole. Every answer goes straight to the round's single writer
(`auditor.storage.writer`, a child process), which scores and commits it as it arrives, so a
killed round loses nothing already answered; answers that arrive while a commit runs are
committed together in the next one.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from auditor.config import Price
from auditor.operations import metrics
from auditor.providers.base import ProviderAdapter
from auditor.records import CompletionResponse, ErrorClass, ProbeCase
from auditor.rounds.budget import BudgetPolicy, EndpointKey, Plan, PlannedRequest, SpendMeter
from auditor.rounds.limits import ProviderLimits
from auditor.secrets import Redactor
from auditor.storage.repository import Store
from auditor.storage.writer import SampleWriter

log = structlog.get_logger(__name__)


class RoundProgress(Protocol):
    def planned(self, key: EndpointKey, count: int) -> None: ...
    def answered(self, key: EndpointKey, ok: bool) -> None: ...


@dataclass
class Endpoint:
    model: str
    name: str
    adapter: ProviderAdapter
    limits: ProviderLimits
    provider_id: int
    price: Price | None = None

    @property
    def key(self) -> EndpointKey:
        return (self.model, self.name)


@dataclass
class RoundOutcome:
    status: str  # complete | interrupted
    stop_reason: str | None
    sent: int
    stored: int
    errors_by_endpoint: dict[EndpointKey, int] = field(default_factory=dict)


class RoundRunner:
    def __init__(
        self,
        store: Store,
        round_id: str,
        endpoints: list[Endpoint],
        cases: dict[str, ProbeCase],
        policy: BudgetPolicy,
        spend: SpendMeter,
        redactor: Redactor,
        progress: RoundProgress | None = None,
        drain_timeout_s: float = 30.0,
        writer_in_process: bool = False,
    ) -> None:
        self.store = store
        self.round_id = round_id
        self.endpoints = {e.key: e for e in endpoints}
        self.cases = cases
        self.policy = policy
        self.spend = spend
        self.redactor = redactor
        self.progress = progress
        self.drain_timeout_s = drain_timeout_s
        self._stop_reason: str | None = None
        self._stopping = asyncio.Event()
        self._errors: dict[EndpointKey, int] = defaultdict(int)
        self._writer = SampleWriter(
            store,
            round_id,
            cases,
            redactor,
            {e.provider_id: e.name for e in endpoints},
            on_failure=self.stop,
            in_process=writer_in_process,
        )

    def stop(self, reason: str) -> None:
        """Stop sending (in-flight requests finish and are stored)."""
        if self._stop_reason is None:
            self._stop_reason = reason
            log.warning("round.stopping", round_id=self.round_id, reason=reason)
        self._stopping.set()

    async def run(self) -> RoundOutcome:
        writer = self._writer
        await writer.start()
        try:
            while not self._stopping.is_set():
                await writer.flush()  # the policy may read what is stored so far
                plan = await self.policy.next_requests()
                if not len(plan):
                    break
                await self._send(plan)
        finally:
            await writer.close()
            await asyncio.gather(*(e.adapter.aclose() for e in self.endpoints.values()))
        if writer.error is not None:
            raise writer.error
        interrupted = self._stop_reason is not None and not self._stop_reason.startswith("budget")
        return RoundOutcome(
            status="interrupted" if interrupted else "complete",
            stop_reason=self._stop_reason,
            sent=self.spend.requests,
            stored=writer.stored,
            errors_by_endpoint=dict(self._errors),
        )

    async def _send(self, plan: Plan) -> None:
        """Send the plan: each endpoint's workers draw its requests one at a time from the
        plan's generator, and every answer goes to the writer (which holds back a worker only
        while a bounded buffer is full); nothing is kept here once it is sent."""
        keys = plan.endpoints()
        for key in keys:
            if key not in self.endpoints:
                raise KeyError(f"policy planned a request for unknown endpoint {key}")
        if self.progress:
            for key in keys:
                self.progress.planned(key, plan.count(key))
        workers = []
        for key in keys:
            endpoint, requests = self.endpoints[key], plan.requests(key)
            slots = min(endpoint.limits.config.max_concurrency, plan.count(key))
            workers += [asyncio.create_task(self._work(endpoint, requests)) for _ in range(slots)]
        stop_waiter = asyncio.create_task(self._stopping.wait())
        done = asyncio.gather(*workers)
        waiters: list[asyncio.Future[Any]] = [done, stop_waiter]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        abandoned = False
        if not done.done():
            # Stopping: no new requests start; in-flight ones get a deadline to finish.
            try:
                await asyncio.wait_for(asyncio.shield(done), self.drain_timeout_s)
            except TimeoutError:
                # A cancelled gather holds a CancelledError as its exception (it is not
                # `cancelled()`): the requests given up on are not the round's error.
                abandoned = done.cancel()
                await asyncio.gather(done, return_exceptions=True)
                log.warning("round.drain_timeout", round_id=self.round_id)
        stop_waiter.cancel()
        if not abandoned and not done.cancelled() and (error := done.exception()) is not None:
            raise error

    async def _work(self, endpoint: Endpoint, requests: Iterator[PlannedRequest]) -> None:
        while not self._stopping.is_set():
            planned = next(requests, None)
            if planned is None:
                return
            async with endpoint.limits.slot(planned.request) as reservation:
                # Checked after waiting for the limits: the budget may have run out meanwhile.
                reason = self.spend.exhausted()
                if reason or self._stopping.is_set():
                    reservation.settle(0)
                    if reason:
                        self.stop(reason)
                    return
                self.spend.sent(reservation.tokens)
                metrics.LIMITER_WAIT.labels(*endpoint.key).observe(reservation.waited_s)
                started = time.monotonic()
                response = await self._complete(endpoint, planned)
                metrics.observe_answer(*endpoint.key, response, time.monotonic() - started)
                tokens = response.usage.spent
                reservation.settle(tokens if response.ok else None)
                cost = self._cost(endpoint, response)
                self.spend.answered(reservation.tokens, tokens, cost)
            if not response.ok:
                self._errors[endpoint.key] += 1
            request = planned.request
            await self._writer.put(
                (
                    endpoint.provider_id,
                    request.probe_hash,
                    request.probe_id,
                    request.sample_index,
                    cost,
                    response,
                )
            )
            if self.progress:
                self.progress.answered(endpoint.key, response.ok)

    async def _complete(self, endpoint: Endpoint, planned: PlannedRequest) -> CompletionResponse:
        """Adapters record a bad answer instead of raising; should one raise all the same, the
        request is recorded as an internal error and the round goes on."""
        try:
            return await endpoint.adapter.complete(planned.request)
        except Exception as exc:
            log.error(
                "adapter.failed",
                round_id=self.round_id,
                provider=endpoint.name,
                probe_id=planned.request.probe_id,
                error=repr(exc),
            )
            return CompletionResponse(
                ok=False,
                error_class=ErrorClass.INTERNAL_ERROR,
                error_message=f"{type(exc).__name__}: {exc}"[:500],
            )

    @staticmethod
    def _cost(endpoint: Endpoint, response: CompletionResponse) -> float | None:
        if endpoint.price is None or not response.ok:
            return None
        usage = response.usage
        return endpoint.price.cost(usage.prompt_tokens or 0, usage.completion_tokens or 0)
