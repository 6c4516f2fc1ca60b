"""A round run in process: scripted endpoints (no HTTP) on a real SQLite store, for the
runner, the budget policies and the metrics they feed."""

from __future__ import annotations

import asyncio
from pathlib import Path

from auditor.config import Price, ProviderConfig, RoundBudget
from auditor.providers.base import ProviderAdapter
from auditor.records import CompletionRequest, CompletionResponse, Message, ProbeCase, Usage
from auditor.rounds.budget import Plan, PlannedRequest, SendEverySample, SpendMeter
from auditor.rounds.limits import ProviderLimits
from auditor.rounds.runner import Endpoint, RoundRunner
from auditor.secrets import Redactor
from auditor.storage.repository import Store
from helpers.db import store_with_round

CASE = ProbeCase(id="c", suite="s", messages=[Message(role="user", content="hi")], samples=20)


class Scripted(ProviderAdapter):
    """An in-process endpoint with a fixed latency; counts what it was asked."""

    def __init__(self, name: str, delay_s: float = 0.0, tokens: int = 10) -> None:
        self.name, self.delay_s, self.tokens, self.calls = name, delay_s, tokens, 0

    async def complete(self, request: CompletionRequest) -> CompletionResponse:
        self.calls += 1
        await asyncio.sleep(self.delay_s)
        return CompletionResponse(
            ok=True,
            text=f"{self.name}-{request.sample_index}",
            usage=Usage(
                prompt_tokens=self.tokens - 2, completion_tokens=2, total_tokens=self.tokens
            ),
            raw_request={"n": request.sample_index},
        )


class Broken(Scripted):
    """Raises on every odd sample, as an adapter with a bug would."""

    async def complete(self, request: CompletionRequest) -> CompletionResponse:
        self.calls += 1
        if request.sample_index % 2:
            raise TypeError("cannot serialise float32")
        return await super().complete(request)


def make_store(tmp_path: Path) -> Store:
    """A SQLite store in `tmp_path` with CASE and the started round "r"."""
    return store_with_round(f"sqlite:///{tmp_path / 'a.db'}", [CASE])


def endpoint(
    store: Store, adapter: Scripted, concurrency: int = 4, price: Price | None = None
) -> Endpoint:
    config = ProviderConfig(
        name=adapter.name,
        base_url="http://127.0.0.1:1/v1",
        model="m",
        requests_per_second=1000,
        burst=100,
        max_concurrency=concurrency,
    )
    pid = store.upsert_provider("m", adapter.name)
    return Endpoint("m", adapter.name, adapter, ProviderLimits(config), pid, price)


def runner(
    store: Store,
    endpoints: list[Endpoint],
    budget: RoundBudget | None = None,
    writer_in_process: bool = False,
    drain_timeout_s: float = 30.0,
) -> RoundRunner:
    """Round "r": every sample of CASE to every endpoint."""
    requests = [CompletionRequest.from_case(CASE, k) for k in range(CASE.samples)]
    plan = [PlannedRequest("m", e.name, r) for r in requests for e in endpoints]
    return RoundRunner(
        store,
        "r",
        endpoints,
        {CASE.content_hash: CASE},
        SendEverySample(Plan.of(plan)),
        SpendMeter(budget or RoundBudget()),
        Redactor([]),
        writer_in_process=writer_in_process,
        drain_timeout_s=drain_timeout_s,
    )
