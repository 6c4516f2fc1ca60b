"""The round runner: isolation between endpoints, budgets, stopping, storage failures."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from helpers.rounds import Broken, Scripted, endpoint, make_store, runner

from auditor.config import Price, RoundBudget


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


async def test_requests_still_in_flight_at_the_drain_deadline_end_an_interrupted_round(
    tmp_path: Path,
) -> None:
    """A provider that never answers: the stopped round gives up on it at the deadline and
    returns interrupted, keeping what was answered, instead of raising CancelledError."""
    store = make_store(tmp_path)
    quick, hung = Scripted("quick", delay_s=0.01), Scripted("hung", delay_s=3600)
    run = runner(
        store,
        [endpoint(store, quick, concurrency=1), endpoint(store, hung, concurrency=2)],
        drain_timeout_s=0.2,
    )
    task = asyncio.create_task(run.run())
    await asyncio.sleep(0.1)
    run.stop("signal SIGTERM")
    outcome = await asyncio.wait_for(task, 10)
    assert outcome.status == "interrupted" and outcome.stop_reason == "signal SIGTERM"
    assert hung.calls == 2 and 1 <= outcome.stored == quick.calls
    (totals,) = store.provider_totals("r")
    assert totals["provider"] == "quick" and totals["requests"] == outcome.stored


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


async def test_an_adapter_that_raises_is_a_recorded_internal_error(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    adapter = Broken("b")
    outcome = await runner(store, [endpoint(store, adapter, concurrency=2)]).run()
    assert outcome.status == "complete" and outcome.stored == 20
    (totals,) = store.provider_totals("r")
    assert totals["errors_by_class"] == {"internal_error": 10}
