"""Send the outbox's due messages to their sinks, signed, at least once.

One attempt's answer decides what happens to the message:

- 2xx: the message is `delivered`.
- 410 Gone: the message is `disabled` and so is the sink (`webhook_sinks`): none of its
  other messages are sent.
- 408, 429, 5xx, connection error, timeout: retried later (same id, same body); the sink
  backs off as a whole.
- any other status (4xx, 3xx): `failed`, a final answer.

The wait before a retry is exponential with full jitter, capped by `alerts.max_backoff`,
and never shorter than the receiver's `Retry-After` (seconds or an HTTP date). A message
still undelivered `alerts.give_up_after` after it was queued is `failed`. A sink whose
secret variable is unset keeps its messages pending (the error names the variable) and is
logged once. Secrets and signatures are never logged or stored; neither is the sink URL
(it may carry a token).
"""

from __future__ import annotations

import asyncio
import os
import random
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import groupby
from typing import Literal

import httpx
import structlog
from standardwebhooks import Webhook

from auditor.alerts import outbox
from auditor.alerts.outbox import Message
from auditor.alerts.signing import SecretError, body_text, signed_headers, signers_for
from auditor.operations.metrics import WEBHOOK_DELIVERIES
from auditor.operations.settings import AlertsConfig, WebhookSink, format_duration
from auditor.providers.retry import parse_retry_after
from auditor.records import utcnow
from auditor.secrets import Redactor
from auditor.storage.repository import Store

log = structlog.get_logger(__name__)

Outcome = Literal["delivered", "retry", "failed", "disabled"]
BACKOFF_BASE_S = 1.0  # first retry within a second, doubling up to alerts.max_backoff
LEASE_MARGIN = timedelta(seconds=30)  # a claim outlives the attempt's timeout by this much
RECHECK = timedelta(seconds=60)  # a sink without its secret is looked at again after this
ERROR_CHARS = 200  # of a receiver's answer, kept in last_error
BATCH = 100


def classify(status: int) -> Outcome:
    if 200 <= status <= 299:
        return "delivered"
    if status == 410:
        return "disabled"
    if status in (408, 429) or 500 <= status <= 599:
        return "retry"
    return "failed"


def backoff_s(attempts: int, cap_s: float, rng: random.Random) -> float:
    """Full-jitter wait after the `attempts`-th failed attempt: uniform in
    [0, min(cap, base * 2**(attempts-1))], so that retries of many messages spread out."""
    exponent = min(max(attempts - 1, 0), 64)
    return rng.uniform(0.0, min(cap_s, BACKOFF_BASE_S * 2**exponent))


@dataclass
class AttemptResult:
    outcome: Outcome
    status: int | None = None
    error: str | None = None
    retry_after_s: float | None = None


@dataclass
class Result:
    """What became of one message in a pass."""

    msg_id: str
    sink: str
    outcome: str  # an Outcome, or: missing_secret | deferred | busy
    status: int | None = None
    error: str | None = None


@dataclass
class DeliveryState:
    """What a deliverer remembers between passes."""

    warned: set[str] = field(default_factory=set)  # sinks whose secret problem was logged
    rng: random.Random = field(default_factory=random.Random)


async def attempt(
    client: httpx.AsyncClient, sink: WebhookSink, msg: Message, signers: list[Webhook]
) -> AttemptResult:
    """One signed POST. The timestamp header is the wall-clock time of this attempt."""
    body = body_text(msg.body)
    headers = signed_headers(msg.id, body, signers)
    redact = Redactor(_sensitive(sink, headers["webhook-signature"]))
    try:
        async with asyncio.timeout(sink.timeout_s):
            async with client.stream(
                "POST", sink.url, content=body.encode(), headers=headers, timeout=sink.timeout_s
            ) as response:
                excerpt = await _excerpt(response)
    except TimeoutError:
        return AttemptResult("retry", error=f"timeout: no answer within {sink.timeout_s:g}s")
    except httpx.HTTPError as exc:  # connection refused or reset, timeouts, protocol errors
        text = redact.text(f"{type(exc).__name__}: {exc}".rstrip(": "))
        return AttemptResult("retry", error=text)
    outcome = classify(response.status_code)
    if outcome == "delivered":
        return AttemptResult(outcome, response.status_code)
    retry_after = parse_retry_after(response.headers) if outcome == "retry" else None
    error = f"HTTP {response.status_code}"
    if excerpt:
        error += ": " + redact.text(" ".join(excerpt.split()))[:ERROR_CHARS]
    return AttemptResult(outcome, response.status_code, error, retry_after)


def _sensitive(sink: WebhookSink, signature_header: str) -> list[str]:
    """Values a receiver might echo back that must not reach the database or the logs."""
    secrets = os.environ.get(sink.secret_env, "").split()
    signatures = signature_header.split()
    return [
        sink.url,
        *secrets,
        *(s.removeprefix("whsec_") for s in secrets),
        *signatures,
        *(s.removeprefix("v1,") for s in signatures),
    ]


async def _excerpt(response: httpx.Response, limit: int = 2048) -> str:
    """The start of an error answer (for last_error); a 2xx body is not read."""
    if 200 <= response.status_code <= 299:
        return ""
    data = b""
    try:
        async for chunk in response.aiter_bytes():
            data += chunk
            if len(data) >= limit:
                break
    except httpx.HTTPError:
        pass  # the status is the answer; the body is only a hint
    return data[:limit].decode("utf-8", "replace")


class _Pass:
    """One pass over some messages: the decisions and the bookkeeping."""

    def __init__(
        self,
        store: Store,
        alerts: AlertsConfig,
        client: httpx.AsyncClient,
        state: DeliveryState,
        now: datetime | None,
        final: bool = False,
        stop: asyncio.Event | None = None,
    ) -> None:
        self.store, self.alerts, self.client, self.state = store, alerts, client, state
        self.clock: Callable[[], datetime] = (lambda: now) if now else utcnow
        self.final = final  # one attempt only (`auditor alerts test`): no retry, no waiting
        self.stop = stop  # set: start no new attempt (shutdown); the rest stays pending
        self.sinks = {s.name: s for s in alerts.sinks}
        self.results: list[Result] = []

    async def db(self, fn: Callable[..., object], *args: object, **kwargs: object) -> object:
        # The database is synchronous; keep the event loop (the daemon's rounds) running.
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def run(self, messages: list[Message], due_only: bool = True) -> list[Result]:
        disabled = await self.db(outbox.disabled_sinks, self.store)
        assert isinstance(disabled, dict)
        by_sink = groupby(sorted(messages, key=lambda m: m.sink), key=lambda m: m.sink)
        batches = [(name, list(group)) for name, group in by_sink]
        outcomes = await asyncio.gather(
            *(self.sink_batch(name, group, disabled, due_only) for name, group in batches),
            return_exceptions=True,
        )
        for (name, _), outcome in zip(batches, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                # One sink's trouble (the database away mid-pass) does not stop the others;
                # its claimed message is due again when the claim's lease ends.
                error = f"{type(outcome).__name__}: {outcome}"
                log.error("webhook.sink_pass_failed", sink=name, error=error)
        return self.results

    def done(self, msg: Message, outcome: str, status: int | None, error: str | None) -> None:
        self.results.append(Result(msg.id, msg.sink, outcome, status, error))

    async def sink_batch(
        self, name: str, messages: list[Message], disabled: dict[str, str], due_only: bool
    ) -> None:
        """One sink's messages, in the order they happened; stops at the first sign that
        the receiver is down, rate-limiting or gone."""
        sink = self.sinks.get(name)
        if name in disabled:
            for msg in messages:
                reason = disabled[name]
                await self.db(
                    outbox.mark_disabled, self.store, msg.id, None, reason, attempted=False
                )
                self.done(msg, "disabled", None, reason)
            return
        try:
            if sink is None:
                raise SecretError(f"sink {name} is not in the config")
            signers = signers_for(sink)
        except SecretError as exc:
            await self.unusable(name, messages, str(exc))
            return
        self.state.warned.discard(name)
        for i, msg in enumerate(messages):
            if self.stop is not None and self.stop.is_set():
                return
            now = self.clock()
            if self.expired(msg, now):
                await self.give_up(msg, msg.last_status, msg.last_error, attempted=False)
                continue
            lease = timedelta(seconds=sink.timeout_s) + LEASE_MARGIN
            claimed = await self.db(outbox.claim, self.store, msg.id, now, lease, due_only=due_only)
            if not claimed:
                self.done(msg, "busy", None, "being sent by another process, or no longer pending")
                continue
            result = await attempt(self.client, sink, msg, signers)
            stop = await self.settle(sink, msg, result)
            if stop:
                for rest in messages[i + 1 :]:
                    self.done(
                        rest,
                        "deferred" if result.outcome == "retry" else "disabled",
                        None,
                        result.error,
                    )
                return

    def expired(self, msg: Message, now: datetime) -> bool:
        return now >= msg.created_at + self.alerts.give_up_after

    async def unusable(self, name: str, messages: list[Message], error: str) -> None:
        """No secret (or no sink): nothing is sent; the messages wait, the reason is kept."""
        if name not in self.state.warned:
            self.state.warned.add(name)
            log.warning("webhook.sink_unusable", sink=name, error=error, pending=len(messages))
        for msg in messages:
            now = self.clock()
            if self.expired(msg, now):
                await self.give_up(msg, None, error, attempted=False)
            elif self.final:
                await self.db(outbox.mark_failed, self.store, msg.id, None, error, attempted=False)
                self.done(msg, "failed", None, error)
            else:
                until = now + min(RECHECK, self.alerts.max_backoff)
                await self.db(outbox.defer, self.store, msg.id, error, until)
                self.done(msg, "missing_secret", None, error)

    async def give_up(
        self, msg: Message, status: int | None, error: str | None, attempted: bool
    ) -> None:
        age = format_duration(self.alerts.give_up_after)
        text = f"gave up: not delivered within {age}" + (f"; last error: {error}" if error else "")
        await self.db(outbox.mark_failed, self.store, msg.id, status, text, attempted=attempted)
        WEBHOOK_DELIVERIES.labels(sink=msg.sink, outcome="failed").inc()
        log.warning("webhook.gave_up", sink=msg.sink, msg_id=msg.id, error=error)
        self.done(msg, "failed", status, text)

    async def settle(self, sink: WebhookSink, msg: Message, result: AttemptResult) -> bool:
        """Record one attempt's outcome; True when the sink's other messages must wait."""
        now = self.clock()
        fields = {"sink": sink.name, "msg_id": msg.id, "status": result.status}
        attempts = msg.attempts + 1
        if result.outcome == "delivered":
            await self.db(outbox.mark_delivered, self.store, msg.id, result.status, now)
            WEBHOOK_DELIVERIES.labels(sink=sink.name, outcome="delivered").inc()
            log.info("webhook.delivered", attempts=attempts, **fields)
            self.done(msg, "delivered", result.status, None)
            return False
        error = result.error or "?"
        if result.outcome == "disabled":
            reason = f"{error} to {msg.id}: the receiver asked to stop"
            await self.db(outbox.mark_disabled, self.store, msg.id, result.status, reason)
            await self.db(outbox.disable_sink, self.store, sink.name, reason, now)
            WEBHOOK_DELIVERIES.labels(sink=sink.name, outcome="disabled").inc()
            log.warning("webhook.sink_disabled", error=error, **fields)
            self.done(msg, "disabled", result.status, reason)
            return True
        if result.outcome == "failed" or self.final:
            await self.db(outbox.mark_failed, self.store, msg.id, result.status, error)
            WEBHOOK_DELIVERIES.labels(sink=sink.name, outcome="failed").inc()
            log.warning("webhook.failed", error=error, **fields)
            self.done(msg, "failed", result.status, error)
            return False
        cap = self.alerts.max_backoff.total_seconds()
        wait = backoff_s(attempts, cap, self.state.rng)
        if result.retry_after_s is not None:
            wait = max(wait, result.retry_after_s)
        next_at = now + timedelta(seconds=wait)
        if self.expired(msg, next_at):
            await self.give_up(msg, result.status, error, attempted=True)
        else:
            await self.db(outbox.mark_retry, self.store, msg.id, result.status, error, next_at)
            WEBHOOK_DELIVERIES.labels(sink=sink.name, outcome="retry").inc()
            log.info(
                "webhook.retry", error=error, attempts=attempts, wait_s=round(wait, 3), **fields
            )
            self.done(msg, "retry", result.status, error)
        # The receiver is down or asked for a pause: its other messages wait as long.
        await self.db(outbox.defer_sink, self.store, sink.name, next_at)
        return True


def _tally(results: list[Result]) -> dict[str, int]:
    return dict(Counter(r.outcome for r in results))


async def deliver_due(
    store: Store,
    alerts: AlertsConfig,
    client: httpx.AsyncClient,
    now: datetime | None = None,
    *,
    state: DeliveryState | None = None,
    limit: int = BATCH,
    stop: asyncio.Event | None = None,
) -> dict[str, int]:
    """One pass over the messages due at `now` (default: the clock): outcome -> count.

    Outcomes: delivered, retry, failed, disabled (as the metric), and missing_secret
    (waiting for the variable), deferred (behind a failing message of the same sink),
    busy (claimed by another process).
    """
    due = await asyncio.to_thread(outbox.due, store, now or utcnow(), limit)
    if not due:
        return {}
    results = await _Pass(store, alerts, client, state or DeliveryState(), now, stop=stop).run(due)
    return _tally(results)


async def deliver_now(
    store: Store,
    alerts: AlertsConfig,
    client: httpx.AsyncClient,
    ids: Collection[str],
    *,
    final: bool = True,
) -> list[Result]:
    """Send these messages at once, due or not (`auditor alerts test`: it queued them with a
    hold). `final`: one attempt, a failure is `failed` rather than retried later."""
    messages = await asyncio.to_thread(outbox.get_messages, store, ids)
    pending = [m for m in messages if m.state == "pending"]
    results = await _Pass(store, alerts, client, DeliveryState(), None, final).run(
        pending, due_only=False
    )
    results += [
        Result(m.id, m.sink, m.state, m.last_status, m.last_error)
        for m in messages
        if m.state != "pending"
    ]
    order = {msg_id: i for i, msg_id in enumerate(m.id for m in messages)}
    return sorted(results, key=lambda r: order.get(r.msg_id, 0))


class Deliverer:
    """The daemon's delivery loop: a pass every `poll_s` (or at once after `wake()`)."""

    def __init__(
        self,
        store: Store,
        alerts: AlertsConfig,
        client: httpx.AsyncClient | None = None,
        *,
        batch: int = BATCH,
    ) -> None:
        self.store, self.alerts, self.batch = store, alerts, batch
        self.state = DeliveryState()
        self._client = client
        self._owns_client = client is None
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """New messages are queued: deliver now rather than at the next poll."""
        self._wake.set()

    def _http(self) -> httpx.AsyncClient:
        if self._client is None or self._client.is_closed:
            self._client = httpx.AsyncClient(follow_redirects=False)
        return self._client

    async def aclose(self) -> None:
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    async def deliver_due(
        self, now: datetime | None = None, stop: asyncio.Event | None = None
    ) -> dict[str, int]:
        """Passes until nothing more is due (bounded: a pass that fills its batch repeats),
        or `stop` is set."""
        total: Counter[str] = Counter()
        for _ in range(100):
            counts = await deliver_due(
                self.store,
                self.alerts,
                self._http(),
                now,
                state=self.state,
                limit=self.batch,
                stop=stop,
            )
            total.update(counts)
            if sum(counts.values()) < self.batch or (stop is not None and stop.is_set()):
                break
        return dict(total)

    async def run(self, stop: asyncio.Event, poll_s: float = 1.0) -> None:
        """Deliver until `stop` is set; then return once the attempts in flight are answered
        (call `flush` after, for a last bounded pass). A failing pass (the database away) is
        logged and the loop goes on: the messages stay in the outbox."""
        try:
            while not stop.is_set():
                try:
                    await self.deliver_due(stop=stop)
                except Exception as exc:  # the daemon must outlive a failed pass
                    log.error("webhook.pass_failed", error=f"{type(exc).__name__}: {exc}")
                await self._idle(stop, poll_s)
        finally:
            await self.aclose()

    async def _idle(self, stop: asyncio.Event, poll_s: float) -> None:
        waits = [asyncio.create_task(stop.wait()), asyncio.create_task(self._wake.wait())]
        try:
            await asyncio.wait(waits, timeout=poll_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
        self._wake.clear()

    async def flush(self, deadline_s: float) -> dict[str, int]:
        """Deliver what is due now, within `deadline_s` (on shutdown). What is left, or was
        in flight at the deadline, stays in the outbox for the next daemon."""
        try:
            async with asyncio.timeout(deadline_s):
                return await self.deliver_due()
        except TimeoutError:
            log.warning("webhook.flush_deadline", deadline_s=deadline_s)
            return {}
        finally:
            await self.aclose()
