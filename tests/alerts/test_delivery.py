"""The outbox against a real receiver on 127.0.0.1 that verifies every signature: down, 500,
429 with Retry-After, 410, timeouts, rotation, a missing secret.

Most tests drive single passes with an injected clock (`now`), so minutes of backoff take no
time; the `Deliverer` tests run in real time with short waits.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
import structlog
from sqlalchemy import select

from auditor.alerts import outbox
from auditor.alerts.delivery import Deliverer, DeliveryState, deliver_due
from auditor.operations.metrics import REGISTRY
from auditor.operations.settings import AlertsConfig
from auditor.records import AlertEvent, as_utc
from auditor.storage.repository import Store
from auditor.storage.tables import OutboxRow, SinkStateRow
from tests.alerts.receiver import (
    NEW_SECRET,
    OLD_SECRET,
    T0,
    Receiver,
    Reply,
    alerts_config,
    incident_event,
    sink,
)


async def pass_at(
    store: Store, config: AlertsConfig, now: datetime, state: DeliveryState | None = None
) -> dict[str, int]:
    async with httpx.AsyncClient() as client:
        return await deliver_due(store, config, client, now, state=state)


def row(store: Store, msg_id: str) -> OutboxRow:
    with store.session() as s:
        found = s.get(OutboxRow, msg_id)
        assert found is not None
        return found


def everything_stored(store: Store) -> str:
    """The outbox and sink tables as text, to look for what must not be there."""
    with store.session() as s:
        rows = [r.model_dump(mode="json") for r in s.execute(select(OutboxRow)).scalars()]
        rows += [r.model_dump(mode="json") for r in s.execute(select(SinkStateRow)).scalars()]
    return json.dumps(rows)


def deliveries(sink_name: str, outcome: str) -> float:
    labels = {"sink": sink_name, "outcome": outcome}
    return REGISTRY.get_sample_value("auditor_webhook_deliveries_total", labels) or 0.0


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_delivered_signed_with_the_stored_id_and_body(
    store: Store, receiver: Receiver, secret_env: str
) -> None:
    config = alerts_config(sink("ops-ok", receiver.url))
    [msg_id] = outbox.enqueue(store, incident_event(), config, T0)
    before = deliveries("ops-ok", "delivered")
    assert await pass_at(store, config, T0) == {"delivered": 1}
    [got] = receiver.requests
    assert got.verified and got.msg_id == msg_id and got.status == 200
    assert abs(int(got.timestamp) - time.time()) < 5  # the attempt's wall-clock time
    assert json.loads(got.body) == row(store, msg_id).body
    assert receiver.processed[msg_id]["data"]["incident"]["provider"] == "ember"
    stored = row(store, msg_id)
    assert (stored.state, stored.attempts, stored.last_status) == ("delivered", 1, 200)
    assert stored.delivered_at is not None
    assert deliveries("ops-ok", "delivered") == before + 1
    assert await pass_at(store, config, T0 + timedelta(hours=1)) == {}  # nothing more
    assert len(receiver.requests) == 1


async def test_a_receiver_down_for_ten_minutes_gets_every_alert_once_back(
    store: Store, down_receiver: Receiver, secret_env: str
) -> None:
    config = alerts_config(sink("ops-down", down_receiver.url), max_backoff="2m")
    ids = [
        outbox.enqueue(store, incident_event(i), config, T0 + timedelta(seconds=i))[0]
        for i in range(3)
    ]
    state = DeliveryState(rng=random.Random(7))
    now, waits = T0 + timedelta(seconds=3), []
    for _ in range(300):
        if now >= T0 + timedelta(minutes=10) and down_receiver.server is None:
            down_receiver.start()
        await pass_at(store, config, now, state)
        pending = outbox.list_messages(store, state="pending")
        if not pending:
            break
        following = min(as_utc(r.next_attempt_at) for r in pending)
        waits.append((following - now).total_seconds())
        now = max(now, following)
    assert now >= T0 + timedelta(minutes=10)
    assert set(down_receiver.processed) == set(ids)  # every alert, once
    assert all(r.verified and not r.duplicate for r in down_receiver.requests)
    assert len(down_receiver.requests) == 3  # nothing was sent while it was down
    assert max(waits) <= 120  # capped by max_backoff
    first = row(store, ids[0])
    assert first.state == "delivered" and first.attempts > 5
    # The others waited behind the first: the sink backed off as a whole.
    assert [row(store, i).attempts for i in ids[1:]] == [1, 1]


async def test_500s_are_retried_with_the_same_webhook_id(
    store: Store, receiver: Receiver, secret_env: str
) -> None:
    receiver.script(Reply(500), Reply(503))
    config = alerts_config(sink("ops-500", receiver.url))
    [msg_id] = outbox.enqueue(store, incident_event(), config, T0)
    before = deliveries("ops-500", "retry")
    assert await pass_at(store, config, T0) == {"retry": 1}
    first_retry = as_utc(row(store, msg_id).next_attempt_at)
    assert T0 <= first_retry <= T0 + timedelta(seconds=1)  # full jitter in [0, 1s]
    assert await pass_at(store, config, first_retry) == {"retry": 1}
    second_retry = as_utc(row(store, msg_id).next_attempt_at)
    assert first_retry <= second_retry <= first_retry + timedelta(seconds=2)
    assert await pass_at(store, config, second_retry) == {"delivered": 1}
    assert receiver.ids() == [msg_id] * 3
    assert [r.status for r in receiver.requests] == [500, 503, 200]
    assert all(r.verified for r in receiver.requests)
    assert len({r.body for r in receiver.requests}) == 1  # the same body every time
    assert list(receiver.processed) == [msg_id]
    stored = row(store, msg_id)
    assert (stored.state, stored.attempts, stored.last_status) == ("delivered", 3, 200)
    assert deliveries("ops-500", "retry") == before + 2


async def test_an_answer_that_comes_too_late_is_a_duplicate_the_receiver_drops(
    store: Store, receiver: Receiver, secret_env: str
) -> None:
    receiver.script(Reply(200, delay=1.5))  # processed, but answered after the timeout
    config = alerts_config(sink("ops-slow", receiver.url, timeout_s=0.3))
    [msg_id] = outbox.enqueue(store, incident_event(), config, T0)
    assert await pass_at(store, config, T0) == {"retry": 1}
    assert "timeout" in (row(store, msg_id).last_error or "")
    assert await pass_at(store, config, T0 + timedelta(seconds=5)) == {"delivered": 1}
    assert receiver.ids() == [msg_id, msg_id]
    assert [r.duplicate for r in receiver.requests] == [False, True]
    assert list(receiver.processed) == [msg_id]  # processed once


async def test_429_waits_at_least_retry_after(
    store: Store, receiver: Receiver, secret_env: str
) -> None:
    receiver.script(Reply(429, {"Retry-After": "120"}))
    config = alerts_config(sink("ops-429", receiver.url), max_backoff="5s")
    [msg_id] = outbox.enqueue(store, incident_event(), config, T0)
    assert await pass_at(store, config, T0) == {"retry": 1}
    assert as_utc(row(store, msg_id).next_attempt_at) >= T0 + timedelta(seconds=120)
    assert await pass_at(store, config, T0 + timedelta(seconds=119)) == {}
    assert len(receiver.requests) == 1
    assert await pass_at(store, config, T0 + timedelta(seconds=121)) == {"delivered": 1}


async def test_429_with_an_http_date(store: Store, receiver: Receiver, secret_env: str) -> None:
    when = datetime.now(UTC) + timedelta(seconds=90)
    receiver.script(Reply(429, {"Retry-After": format_datetime(when, usegmt=True)}))
    config = alerts_config(sink("ops-429-date", receiver.url), max_backoff="5s")
    [msg_id] = outbox.enqueue(store, incident_event(), config, T0)
    await pass_at(store, config, T0)
    assert as_utc(row(store, msg_id).next_attempt_at) >= T0 + timedelta(seconds=85)


async def test_429_retry_after_in_real_time(
    store: Store, receiver: Receiver, secret_env: str
) -> None:
    receiver.script(Reply(429, {"Retry-After": "1"}))
    config = alerts_config(sink("ops-429-rt", receiver.url), max_backoff="0.05s")
    outbox.enqueue(store, incident_event(), config)
    stop = asyncio.Event()
    task = asyncio.create_task(Deliverer(store, config).run(stop, poll_s=0.05))
    await wait_for(lambda: len(receiver.processed) == 1)
    stop.set()
    await asyncio.wait_for(task, 5)
    first, second = receiver.requests
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 1.0


async def test_410_disables_the_sink_and_nothing_more_is_sent(
    store: Store, receiver: Receiver, secret_env: str
) -> None:
    other = Receiver([NEW_SECRET]).start()
    try:
        receiver.script(Reply(410))
        config = alerts_config(sink("ops-gone", receiver.url), sink("ops-other", other.url))
        for i in range(2):
            outbox.enqueue(store, incident_event(i), config, T0)
        before = deliveries("ops-gone", "disabled")
        counts = await pass_at(store, config, T0)
        assert counts == {"disabled": 2, "delivered": 2}
        assert len(receiver.requests) == 1 and len(other.processed) == 2
        with store.session() as s:
            state = s.get(SinkStateRow, "ops-gone")
        assert state is not None and state.disabled_at is not None
        assert "410" in (state.disabled_reason or "")
        assert deliveries("ops-gone", "disabled") == before + 1
        later = outbox.enqueue(store, incident_event(5), config, T0 + timedelta(minutes=1))
        assert sorted(row(store, i).state for i in later) == ["disabled", "pending"]
        await pass_at(store, config, T0 + timedelta(hours=1))
        assert len(receiver.requests) == 1 and len(other.processed) == 3
        gone = outbox.list_messages(store, sink="ops-gone")
        assert {r.state for r in gone} == {"disabled"}
        # Re-enabled by hand: new messages go again.
        assert outbox.enable_sink(store, "ops-gone")
        outbox.enqueue(store, incident_event(6), config, T0 + timedelta(hours=2))
        await pass_at(store, config, T0 + timedelta(hours=2))
        assert len(receiver.processed) == 1
    finally:
        other.stop()


async def test_other_4xx_fail_without_retry(
    store: Store, receiver: Receiver, secret_env: str
) -> None:
    receiver.script(Reply(422, body="unknown event type"))
    config = alerts_config(sink("ops-422", receiver.url))
    [msg_id] = outbox.enqueue(store, incident_event(), config, T0)
    assert await pass_at(store, config, T0) == {"failed": 1}
    stored = row(store, msg_id)
    assert (stored.state, stored.attempts, stored.last_status) == ("failed", 1, 422)
    assert stored.last_error == "HTTP 422: unknown event type"
    await pass_at(store, config, T0 + timedelta(days=1))
    assert len(receiver.requests) == 1


async def test_give_up_after(store: Store, receiver: Receiver, secret_env: str) -> None:
    receiver.script(*[Reply(500)] * 10)
    config = alerts_config(sink("ops-giveup", receiver.url), give_up_after="30s", max_backoff="1s")
    [msg_id] = outbox.enqueue(store, incident_event(), config, T0)
    assert await pass_at(store, config, T0) == {"retry": 1}
    assert await pass_at(store, config, T0 + timedelta(seconds=5)) == {"retry": 1}
    assert await pass_at(store, config, T0 + timedelta(seconds=31)) == {"failed": 1}
    stored = row(store, msg_id)
    assert stored.state == "failed" and stored.attempts == 2
    assert stored.last_error == "gave up: not delivered within 30s; last error: HTTP 500"
    assert len(receiver.requests) == 2  # the expired message was not sent again


async def test_a_retry_after_beyond_the_give_up_time_fails_at_once(
    store: Store, receiver: Receiver, secret_env: str
) -> None:
    receiver.script(Reply(503, {"Retry-After": "3600"}))
    config = alerts_config(sink("ops-late", receiver.url), give_up_after="10m")
    [msg_id] = outbox.enqueue(store, incident_event(1), config, T0)
    [other] = outbox.enqueue(store, incident_event(2), config, T0 + timedelta(seconds=1))
    assert await pass_at(store, config, T0 + timedelta(seconds=1)) == {"failed": 1, "deferred": 1}
    assert (row(store, msg_id).last_error or "").startswith("gave up")
    # The other message keeps to the receiver's pause: not sent, then too old.
    assert as_utc(row(store, other).next_attempt_at) >= T0 + timedelta(seconds=3600)
    assert await pass_at(store, config, T0 + timedelta(minutes=5)) == {}
    assert await pass_at(store, config, T0 + timedelta(hours=2)) == {"failed": 1}
    assert len(receiver.requests) == 1


@pytest.mark.parametrize("receiver_knows", [[OLD_SECRET], [NEW_SECRET]])
async def test_rotation_either_secret_verifies(
    store: Store, monkeypatch: pytest.MonkeyPatch, receiver_knows: list[str]
) -> None:
    monkeypatch.setenv("HOOK_SECRET", f"{NEW_SECRET} {OLD_SECRET}")
    receiver = Receiver(receiver_knows).start()
    try:
        config = alerts_config(sink("ops-rotate", receiver.url))
        outbox.enqueue(store, incident_event(), config, T0)
        assert await pass_at(store, config, T0) == {"delivered": 1}
        [got] = receiver.requests
        assert got.verified
        assert [s.split(",")[0] for s in got.signature.split(" ")] == ["v1", "v1"]
    finally:
        receiver.stop()


async def test_a_receiver_with_another_secret_rejects(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_SECRET", NEW_SECRET)
    receiver = Receiver([OLD_SECRET]).start()
    try:
        config = alerts_config(sink("ops-wrong", receiver.url))
        [msg_id] = outbox.enqueue(store, incident_event(), config, T0)
        assert await pass_at(store, config, T0) == {"failed": 1}
        assert not receiver.requests[0].verified
        assert row(store, msg_id).last_status == 400
    finally:
        receiver.stop()


async def test_a_missing_secret_keeps_messages_pending_and_is_logged_once(
    store: Store, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HOOK_SECRET", raising=False)
    config = alerts_config(sink("ops-nosecret", receiver.url))
    ids = [outbox.enqueue(store, incident_event(i), config, T0)[0] for i in range(2)]
    state = DeliveryState()
    with structlog.testing.capture_logs() as logs:
        assert await pass_at(store, config, T0, state) == {"missing_secret": 2}
        assert await pass_at(store, config, T0 + timedelta(minutes=2), state) == {
            "missing_secret": 2
        }
    warnings = [e for e in logs if e["event"] == "webhook.sink_unusable"]
    assert len(warnings) == 1
    assert warnings[0]["error"] == "environment variable HOOK_SECRET is not set"
    for msg_id in ids:
        stored = row(store, msg_id)
        assert (stored.state, stored.attempts) == ("pending", 0)
        assert stored.last_error == "environment variable HOOK_SECRET is not set"
    assert receiver.requests == []
    monkeypatch.setenv("HOOK_SECRET", NEW_SECRET)
    with structlog.testing.capture_logs() as more_logs:
        assert await pass_at(store, config, T0 + timedelta(minutes=4), state) == {"delivered": 2}
    assert set(receiver.processed) == set(ids)
    texts = json.dumps([logs, more_logs], default=str) + everything_stored(store)
    texts += "".join(r.body.decode() for r in receiver.requests)
    assert NEW_SECRET not in texts and NEW_SECRET.removeprefix("whsec_") not in texts
    assert not any(r.signature in texts for r in receiver.requests)


async def test_an_invalid_secret_is_named_not_shown(
    store: Store, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_SECRET", f"{NEW_SECRET} hunter2-not-a-secret")
    config = alerts_config(sink("ops-badsecret", receiver.url))
    [msg_id] = outbox.enqueue(store, incident_event(), config, T0)
    assert await pass_at(store, config, T0) == {"missing_secret": 1}
    error = row(store, msg_id).last_error or ""
    assert "HOOK_SECRET" in error and "secret 2 of 2" in error
    assert "hunter2" not in error and NEW_SECRET not in error


async def test_a_receiver_echoing_secrets_back_is_redacted(
    store: Store, receiver: Receiver, secret_env: str
) -> None:
    receiver.script(Reply(400, echo=True))
    config = alerts_config(sink("ops-echo", receiver.url + "?token=tok_abcdef123456"))
    [msg_id] = outbox.enqueue(store, incident_event(), config, T0)
    with structlog.testing.capture_logs() as logs:
        assert await pass_at(store, config, T0) == {"failed": 1}
    error = row(store, msg_id).last_error or ""
    assert error.startswith("HTTP 400: [REDACTED]")
    texts = everything_stored(store) + json.dumps(logs, default=str)
    signature = receiver.requests[0].signature
    for value in (NEW_SECRET, NEW_SECRET.removeprefix("whsec_"), signature, "tok_abcdef123456"):
        assert value not in texts
    for part in signature.split(" "):
        assert part.removeprefix("v1,") not in texts


async def test_two_deliverers_send_each_message_once(
    store: Store, receiver: Receiver, secret_env: str
) -> None:
    config = alerts_config(sink("ops-two", receiver.url))
    ids = [outbox.enqueue(store, incident_event(i), config, T0)[0] for i in range(6)]
    a, b = Deliverer(store, config), Deliverer(store, config)
    counts = await asyncio.gather(a.deliver_due(T0), b.deliver_due(T0))
    await asyncio.gather(a.aclose(), b.aclose())
    assert sorted(receiver.ids()) == sorted(ids)  # each sent once, by one of them
    assert sum(c.get("delivered", 0) for c in counts) == 6


async def test_deliverer_wakes_up_for_new_messages(
    store: Store, receiver: Receiver, secret_env: str
) -> None:
    config = alerts_config(sink("ops-wake", receiver.url))
    deliverer = Deliverer(store, config)
    stop = asyncio.Event()
    task = asyncio.create_task(deliverer.run(stop, poll_s=60))
    await asyncio.sleep(0.2)  # the first pass is done, it sleeps
    started = time.monotonic()
    [msg_id] = outbox.enqueue(store, incident_event(), config)
    deliverer.wake()
    await wait_for(lambda: msg_id in receiver.processed, timeout=5)
    assert time.monotonic() - started < 5
    stop.set()
    await asyncio.wait_for(task, 5)  # stops at once, not after poll_s


async def test_deliverer_retries_in_real_time(
    store: Store, receiver: Receiver, secret_env: str
) -> None:
    receiver.script(Reply(500), Reply(502))
    config = alerts_config(sink("ops-rt", receiver.url), max_backoff="0.1s")
    [msg_id] = outbox.enqueue(store, incident_event(), config)
    stop = asyncio.Event()
    task = asyncio.create_task(Deliverer(store, config).run(stop, poll_s=0.05))
    await wait_for(lambda: msg_id in receiver.processed)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert receiver.ids() == [msg_id] * 3
    assert row(store, msg_id).state == "delivered"


async def test_flush_delivers_what_is_due_within_its_deadline(
    store: Store, receiver: Receiver, secret_env: str
) -> None:
    config = alerts_config(sink("ops-flush", receiver.url))
    ids = [outbox.enqueue(store, incident_event(i), config)[0] for i in range(2)]
    assert await Deliverer(store, config).flush(5) == {"delivered": 2}
    assert set(receiver.processed) == set(ids)


async def test_flush_stops_at_its_deadline_and_keeps_the_message(
    store: Store, receiver: Receiver, secret_env: str
) -> None:
    receiver.script(Reply(200, delay=3))
    config = alerts_config(sink("ops-hang", receiver.url, timeout_s=10))
    [msg_id] = outbox.enqueue(store, incident_event(), config)
    started = time.monotonic()
    assert await Deliverer(store, config).flush(0.5) == {}
    assert time.monotonic() - started < 2
    stored = row(store, msg_id)
    assert stored.state == "pending"  # claimed for the attempt; due again when the lease ends
    assert as_utc(stored.next_attempt_at) > datetime.now(UTC)


async def test_a_sink_removed_from_the_config_keeps_its_messages(
    store: Store, receiver: Receiver, secret_env: str
) -> None:
    config = alerts_config(sink("ops-removed", receiver.url))
    [msg_id] = outbox.enqueue(store, AlertEvent(type="test"), config, T0)
    assert await pass_at(store, alerts_config(), T0) == {"missing_secret": 1}
    assert row(store, msg_id).last_error == "sink ops-removed is not in the config"
    assert row(store, msg_id).state == "pending"


async def test_run_stops_between_messages(
    store: Store, receiver: Receiver, secret_env: str
) -> None:
    receiver.script(*[Reply(200, delay=0.3)] * 5)
    config = alerts_config(sink("ops-stop", receiver.url))
    for i in range(5):
        outbox.enqueue(store, incident_event(i), config)
    stop = asyncio.Event()
    task = asyncio.create_task(Deliverer(store, config).run(stop, poll_s=0.05))
    await wait_for(lambda: len(receiver.requests) >= 1)
    stop.set()
    await asyncio.wait_for(task, 2)  # the attempt in flight is answered, no new one starts
    assert len(receiver.requests) <= 2
    assert len(outbox.list_messages(store, state="pending")) >= 3
