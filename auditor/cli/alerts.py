"""Webhook alerts: send a signed test event, list the outbox, re-enable a sink."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from enum import StrEnum
from typing import Annotated

import httpx
import typer

from auditor.cli.common import (
    ConfigOpt,
    DatabaseOpt,
    alerts_app,
    database_url,
    open_config,
    open_store,
    print_line,
)
from auditor.config import DEFAULT_CONFIG
from auditor.errors import UsageError
from auditor.records import AlertEvent, as_utc

# A test message is due for the daemon only after this: `alerts test` sends it itself, and
# if it dies first the message still goes out.
TEST_HOLD = timedelta(minutes=1)


class OutboxState(StrEnum):
    pending = "pending"
    delivered = "delivered"
    failed = "failed"
    disabled = "disabled"


@alerts_app.command("test")
def alerts_test(
    config_path: ConfigOpt = DEFAULT_CONFIG,
    sink: Annotated[str | None, typer.Option("--sink", help="Only this sink.")] = None,
    database: DatabaseOpt = None,
) -> None:
    """Send a signed test event to every sink (or one) now: one line per sink; exit 1 if
    any was not delivered."""
    from auditor.alerts.delivery import Result, deliver_now
    from auditor.alerts.outbox import enqueue

    config = open_config(config_path)
    names = [s.name for s in config.alerts.sinks]
    if not names:
        raise UsageError(f"{config_path}: alerts.sinks: no webhook sink configured")
    if sink is not None and sink not in names:
        raise UsageError(f"--sink: unknown sink {sink!r} (known: {', '.join(names)})")
    store = open_store(database or config.database)
    chosen = [sink] if sink else names
    ids = enqueue(store, AlertEvent(type="test"), config.alerts, sinks=chosen, hold=TEST_HOLD)

    async def send() -> list[Result]:
        async with httpx.AsyncClient(follow_redirects=False) as client:
            return await deliver_now(store, config.alerts, client, ids)

    results = asyncio.run(send())
    for r in results:
        status = str(r.status) if r.status is not None else "-"
        print_line(f"{r.sink}\t{r.outcome}\t{status}\t{r.msg_id}\t{r.error or ''}".rstrip("\t"))
    if any(r.outcome != "delivered" for r in results):
        raise typer.Exit(1)


@alerts_app.command("list")
def alerts_list(
    config_path: ConfigOpt = DEFAULT_CONFIG,
    state: Annotated[OutboxState | None, typer.Option(help="Only messages in this state.")] = None,
    sink: Annotated[str | None, typer.Option(help="Only this sink's messages.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
    database: DatabaseOpt = None,
) -> None:
    """The webhook outbox: id, sink, type, state, attempts, last status, next attempt, error."""
    from auditor.alerts.outbox import list_messages

    store = open_store(database_url(config_path, database))
    for row in list_messages(store, state.value if state else None, sink, limit):
        nxt = f"{as_utc(row.next_attempt_at):%Y-%m-%d %H:%M:%S}" if row.state == "pending" else "-"
        status = str(row.last_status) if row.last_status is not None else "-"
        fields = [row.id, row.sink, row.event_type, row.state, str(row.attempts), status, nxt]
        print_line("\t".join([*fields, row.last_error or ""]).rstrip("\t"))


@alerts_app.command("enable")
def alerts_enable(
    name: Annotated[str, typer.Argument(help="The sink to send to again.")],
    config_path: ConfigOpt = DEFAULT_CONFIG,
    database: DatabaseOpt = None,
) -> None:
    """Re-enable a sink disabled by a 410 answer (new messages only)."""
    from auditor.alerts.outbox import enable_sink

    store = open_store(database_url(config_path, database))
    if not enable_sink(store, name):
        raise UsageError(f"sink {name!r} is not disabled")
    print_line(f"{name}\tenabled")
