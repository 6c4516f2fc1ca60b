"""The round runner: isolation between endpoints, budgets, stopping, storage failures."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from auditor.config import Price, ProviderConfig, RoundBudget
from auditor.providers.base import ProviderAdapter
from auditor.records import CompletionRequest, CompletionResponse, Message, ProbeCase, Usage
from auditor.rounds.budget import Plan, PlannedRequest, SendEverySample, SpendMeter
from auditor.rounds.limits import ProviderLimits
from auditor.rounds.runner import Endpoint, RoundRunner
from auditor.secrets import Redactor
from auditor.storage.db import ensure_schema, make_engine
from auditor.storage.repository import Store
from auditor.storage.tables import RoundRow

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


def make_store(tmp_path: Path) -> Store:
    engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    ensure_schema(engine)
    store = Store(engine)
    store.upsert_probe_cases([CASE])
    store.start_round(RoundRow(id="r", suite="s", suite_hash="h", auditor_version="t"))
    return store


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
) -> RoundRunner:
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
    )


async def test_a_slow_endpoint_does_not_hold_up_a_fast_one(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    fast, slow = Scripted("fast"), Scripted("slow", delay_s=0.05)
    run = runner(store, [endpoint(store, fast), endpoint(store, slow, concurrency=1)])
    task = asyncio.create_task(run.run())
    await asyncio.sleep(0.3)
    assert fast.calls == 20 and slow.calls < 10
    outcome = await task
    assert outcome.status == "complete" and outcome.stored == 40
    totals = {t["provider"]: t for t in store.provider_totals("r")}
    assert totals["fast"]["requests"] == totals["slow"]["requests"] == 20


async def test_token_budget_stops_cleanly_and_cost_is_counted(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    adapter = Scripted("a", tokens=100)
    price = Price(input_per_mtok=1_000_000, output_per_mtok=0)
    run = runner(
        store, [endpoint(store, adapter, concurrency=1, price=price)], RoundBudget(max_tokens=550)
    )
    outcome = await run.run()
    assert outcome.status == "complete" and outcome.stop_reason == "budget: max_tokens"
    assert adapter.calls == outcome.stored
    assert 5 <= outcome.stored <= 6  # 100 tokens each; the cap counts reserved tokens in flight
    (totals,) = store.provider_totals("r")
    assert totals["cost"] == pytest.approx(98.0 * outcome.stored)


async def test_stop_lets_in_flight_requests_finish_and_stores_them(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    adapter = Scripted("a", delay_s=0.1)
    run = runner(store, [endpoint(store, adapter, concurrency=2)])
    task = asyncio.create_task(run.run())
    await asyncio.sleep(0.15)
    run.stop("signal SIGTERM")
    outcome = await task
    assert outcome.status == "interrupted" and outcome.stop_reason == "signal SIGTERM"
    assert adapter.calls == outcome.stored and 2 <= outcome.stored < 20


async def test_a_storage_failure_stops_the_round_and_is_raised(tmp_path: Path) -> None:
    """With the writer in this process, so that the store can be made to fail (the child
    process's storage failures: tests/storage/test_writer.py)."""
    store = make_store(tmp_path)
    adapter = Scripted("a", delay_s=0.02)
    run = runner(store, [endpoint(store, adapter, concurrency=1)], writer_in_process=True)
    original = store.add_samples
    calls = 0

    def failing(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls == 3:
            raise OSError("disk full")
        return original(*args, **kwargs)

    store.add_samples = failing  # type: ignore[method-assign]
    with pytest.raises(OSError, match="disk full"):
        await asyncio.wait_for(run.run(), timeout=10)
    assert adapter.calls < 20


class Broken(Scripted):
    async def complete(self, request: CompletionRequest) -> CompletionResponse:
        self.calls += 1
        if request.sample_index % 2:
            raise TypeError("cannot serialise float32")
        return await super().complete(request)


async def test_an_adapter_that_raises_is_a_recorded_internal_error(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    adapter = Broken("b")
    outcome = await runner(store, [endpoint(store, adapter, concurrency=2)]).run()
    assert outcome.status == "complete" and outcome.stored == 20
    (totals,) = store.provider_totals("r")
    assert totals["errors_by_class"] == {"internal_error": 10}
