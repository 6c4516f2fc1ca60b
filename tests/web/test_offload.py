"""Blocking calls of the HTTP handlers: one thread at a time, shared, bounded by a timeout."""

from __future__ import annotations

import asyncio
import threading

import pytest

from auditor.web.offload import SingleFlight


async def test_callers_share_one_call_and_stop_waiting_after_the_timeout() -> None:
    release = threading.Event()
    calls = 0

    def slow() -> str:
        nonlocal calls
        calls += 1
        release.wait(5)
        return "done"

    flight = SingleFlight("slow", slow)
    with pytest.raises(TimeoutError):
        await flight.run(0.05)
    with pytest.raises(TimeoutError):
        await flight.run(0.05)  # joins the call still running: no second thread
    assert calls == 1
    release.set()
    assert await flight.run(5) == "done"
    assert calls == 1, "the finished call's result served the waiter"
    assert await flight.run(5) == "done" and calls == 2, "a new call once the last is done"


async def test_the_calls_exception_reaches_the_caller() -> None:
    def broken() -> None:
        raise ConnectionError("refused")

    flight = SingleFlight("broken", broken)
    with pytest.raises(ConnectionError, match="refused"):
        await flight.run(5)
    await asyncio.sleep(0)
