"""Blocking database calls made from the HTTP handlers, off the event loop and bounded.

A health probe or a scrape must never hang the daemon, nor pile up threads while the database
does not answer: each kind of call runs in one daemon thread at a time, callers arriving
while it runs share its result, and a caller stops waiting after a timeout (the thread
finishes, or not, on its own; being a daemon thread it never holds up the process's exit).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Generic, TypeVar, cast

T = TypeVar("T")


class SingleFlight(Generic[T]):
    def __init__(self, name: str, call: Callable[[], T]) -> None:
        self.name = name
        self.call = call
        self._inflight: asyncio.Future[T] | None = None

    async def run(self, timeout_s: float) -> T:
        """The call's result; `TimeoutError` after `timeout_s`, or the call's own exception."""
        if self._inflight is None or self._inflight.done():
            self._inflight = self._start()
        return await asyncio.wait_for(asyncio.shield(self._inflight), timeout_s)

    def _start(self) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def settle(result: T | None, error: BaseException | None) -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(cast(T, result))  # no error: the call returned a T

        def target() -> None:
            result: T | None = None
            error: BaseException | None = None
            try:
                result = self.call()
            except BaseException as exc:
                error = exc
            # RuntimeError: the loop closed meanwhile, and nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, result, error)

        threading.Thread(target=target, name=f"auditor-web-{self.name}", daemon=True).start()
        # Retrieved even if every waiter timed out, so asyncio logs no "never retrieved" error.
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        return future
