"""The round's writer process: the same rows as the writer in a thread, nothing the child
received lost when the round's process is killed, a dead child never hangs a round."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from auditor.config import ProviderConfig, RoundBudget
from auditor.providers.base import ProviderAdapter
from auditor.records import (
    CompletionRequest,
    CompletionResponse,
    ErrorClass,
    Message,
    ProbeCase,
    ScoreRecord,
    Usage,
)
from auditor.rounds.budget import Plan, PlannedRequest, SendEverySample, SpendMeter
from auditor.rounds.limits import ProviderLimits
from auditor.rounds.runner import Endpoint, RoundRunner
from auditor.scorers import Scorer, scorers
from auditor.secrets import Redactor
from auditor.storage.db import ensure_schema, make_engine
from auditor.storage.repository import Store
from auditor.storage.tables import RoundRow

CASE = ProbeCase(
    id="c",
    suite="s",
    messages=[Message(role="user", content="Capital of France?")],
    samples=200,
    expect={"regex": "Paris"},
)
SECRET = "sk-writer-0123456789"
AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


class Scripted(ProviderAdapter):
    """Deterministic answers: every third one an error, every fifth echoing a secret."""

    def __init__(self, name: str, delay_s: float = 0.0) -> None:
        self.name, self.delay_s, self.calls = name, delay_s, 0

    async def complete(self, request: CompletionRequest) -> CompletionResponse:
        self.calls += 1
        await asyncio.sleep(self.delay_s)
        k = request.sample_index
        if k % 3 == 2:
            return CompletionResponse(
                ok=False,
                status_code=503,
                error_class=ErrorClass.SERVER_ERROR,
                error_message=f"busy, key {SECRET}" if k % 5 == 0 else "busy",
                started_at=AT,
            )
        return CompletionResponse(
            ok=True,
            status_code=200,
            text=f"Paris {k}" + (f" {SECRET}" if k % 5 == 0 else ""),
            finish_reason="stop",
            usage=Usage(prompt_tokens=8, completion_tokens=2, total_tokens=10),
            raw_request={"n": k},
            raw_response={"choices": [{"message": {"content": f"Paris {k}"}}]},
            headers={"server": "stub"},
            latency_s=0.01,
            started_at=AT,
        )


class HeldAfter(Scripted):
    """Answers the first `free` samples at once; the rest wait for `release`."""

    def __init__(self, name: str, free: int, delay_s: float = 0.0) -> None:
        super().__init__(name, delay_s)
        self.free, self.release = free, asyncio.Event()

    async def complete(self, request: CompletionRequest) -> CompletionResponse:
        if request.sample_index >= self.free:
            await self.release.wait()
        return await super().complete(request)


def make_store(path: Path) -> Store:
    engine = make_engine(f"sqlite:///{path}")
    ensure_schema(engine)
    store = Store(engine)
    store.upsert_probe_cases([CASE])
    store.start_round(RoundRow(id="r", suite="s", suite_hash="h", auditor_version="t"))
    return store


def make_runner(
    store: Store,
    adapter: Scripted,
    samples: int = 60,
    in_process: bool = False,
    provider_id: int | None = None,
) -> RoundRunner:
    config = ProviderConfig(
        name=adapter.name,
        base_url="http://127.0.0.1:1/v1",
        model="m",
        requests_per_second=100_000,
        burst=100,
        max_concurrency=4,
    )
    pid = provider_id or store.upsert_provider("m", adapter.name)
    endpoint = Endpoint("m", adapter.name, adapter, ProviderLimits(config), pid)
    plan = Plan.of(
        PlannedRequest("m", adapter.name, CompletionRequest.from_case(CASE, k))
        for k in range(samples)
    )
    return RoundRunner(
        store,
        "r",
        [endpoint],
        {CASE.content_hash: CASE},
        SendEverySample(plan),
        SpendMeter(RoundBudget()),
        Redactor([SECRET]),
        writer_in_process=in_process,
    )


def rows(path: Path) -> list[tuple[Any, ...]]:
    """Every sample with its scores, without ids and storage times."""
    with sqlite3.connect(path) as conn:
        conn.row_factory = sqlite3.Row
        samples = conn.execute("SELECT * FROM samples ORDER BY sample_index").fetchall()
        out = []
        for s in samples:
            scores = conn.execute(
                "SELECT scorer, scorer_params, metric, value, passed, detail FROM scores "
                "WHERE sample_id = ? ORDER BY scorer, metric",
                (s["id"],),
            ).fetchall()
            values = {k: s[k] for k in s.keys() if k not in ("id", "created_at")}  # noqa: SIM118
            out.append((values, [tuple(c) for c in scores]))
    return out


def stored_indexes(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        return [i for (i,) in conn.execute("SELECT sample_index FROM samples")]


async def test_the_child_stores_the_same_rows_as_a_thread(tmp_path: Path) -> None:
    results = {}
    for in_process in (False, True):
        path = tmp_path / f"{in_process}.db"
        store = make_store(path)
        run = make_runner(store, Scripted("p"), in_process=in_process)
        assert run._writer.in_process is in_process
        outcome = await run.run()
        assert outcome.status == "complete" and outcome.stored == 60
        results[in_process] = rows(path)
    assert results[False] == results[True]
    (values, scores), *_ = results[False]
    assert values["output_text"] == "Paris 0 [REDACTED]" and scores
    assert all(SECRET not in json.dumps(r, default=str) for r in results[False])


async def test_the_sequential_policy_reads_everything_stored_before_each_look(
    tmp_path: Path,
) -> None:
    """`flush` waits for the child's acknowledgements (tests/test_budget.py looks too)."""
    store = make_store(tmp_path / "a.db")
    run = make_runner(store, Scripted("p", delay_s=0.001))
    await run._writer.start()
    for k in range(40):
        response = await Scripted("p").complete(CompletionRequest.from_case(CASE, k))
        await run._writer.put((1, CASE.content_hash, CASE.id, k, None, response))
    await run._writer.flush()
    assert len(stored_indexes(tmp_path / "a.db")) == 40 and run._writer.stored == 40
    await run._writer.close()


async def test_a_dead_child_interrupts_the_round_and_its_answers_are_stored_here(
    tmp_path: Path,
) -> None:
    store = make_store(tmp_path / "a.db")
    adapter = Scripted("p", delay_s=0.05)
    run = make_runner(store, adapter, samples=200)
    task = asyncio.create_task(run.run())
    while run._writer.stored < 20:
        await asyncio.sleep(0.01)
    link = run._writer._link
    assert link is not None and not link.in_process
    os.kill(link.worker.pid, signal.SIGKILL)  # type: ignore[union-attr]
    outcome = await asyncio.wait_for(task, timeout=30)
    assert outcome.status == "interrupted"
    assert outcome.stop_reason == "writer process died (exit code -9)"
    # Every answer is stored once: what the child committed, and the rest by the thread
    # (answers the child committed without acknowledging them are not stored twice).
    indexes = stored_indexes(tmp_path / "a.db")
    assert len(indexes) == len(set(indexes)) == adapter.calls
    assert adapter.calls < 200


async def test_a_storage_error_in_the_child_stops_the_round_and_is_raised(
    tmp_path: Path,
) -> None:
    """The answers after the first 20 wait until the table is gone: on a loaded machine the
    child may start late and store everything answered so far in one batch."""
    path = tmp_path / "a.db"
    store = make_store(path)
    adapter = HeldAfter("p", free=20, delay_s=0.05)
    run = make_runner(store, adapter, samples=200)
    task = asyncio.create_task(run.run())
    while run._writer.stored < 10:
        await asyncio.sleep(0.01)
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE scores")
    adapter.release.set()
    with pytest.raises(Exception, match="scores"):
        await asyncio.wait_for(task, timeout=30)
    assert run._stop_reason == "storage error: OperationalError"
    assert adapter.calls < 200


async def test_a_full_disk_holds_the_answers_until_there_is_room_again(
    tmp_path: Path,
) -> None:
    """SQLite answers "database or disk is full" (its page limit stands in for the disk):
    the writer keeps the answers and retries; once there is room, every one is stored
    once and the round completes. (In a thread: the child runs the same code, but opens
    its own engine, out of this test's reach.)"""
    path = tmp_path / "a.db"
    store = make_store(path)
    with sqlite3.connect(path) as conn:
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
    limit = [pages]  # no page more: the next insert that needs one fails

    def cap(dbapi_connection: Any, *_: Any) -> None:
        dbapi_connection.execute(f"PRAGMA max_page_count = {limit[0]}")

    event.listen(store.engine, "checkout", cap)
    adapter = Scripted("p")
    run = make_runner(store, adapter, samples=120, in_process=True)
    task = asyncio.create_task(run.run())
    for _ in range(300):
        await asyncio.sleep(0.02)
        if adapter.calls == 120:
            break
    await asyncio.sleep(1.0)  # the writer has met the full disk by now
    assert not task.done() and run._writer.stored < 120
    limit[0] = 1_000_000
    outcome = await asyncio.wait_for(task, timeout=60)
    assert outcome.status == "complete" and outcome.stored == 120
    indexes = stored_indexes(path)
    assert sorted(indexes) == list(range(120))


class Shouting(Scorer):
    """A scorer registered at run time, as a plugin module would register one."""

    name = "test-shouting"

    def score(self, case: ProbeCase, response: CompletionResponse) -> list[ScoreRecord]:
        return [self._record("shouted", float((response.text or "").isupper()))]


@pytest.fixture
def shouting() -> Iterator[None]:
    scorers.register("test-shouting")(Shouting)
    yield
    scorers._items.pop("test-shouting")


async def test_a_scorer_registered_at_run_time_scores_in_the_child(
    tmp_path: Path, shouting: None
) -> None:
    store = make_store(tmp_path / "a.db")
    run = make_runner(store, Scripted("p"), samples=5)
    outcome = await run.run()
    assert outcome.stored == 5
    with sqlite3.connect(tmp_path / "a.db") as conn:
        (count,) = conn.execute("SELECT count(*) FROM scores WHERE scorer = 'test-shouting'")
    assert count == (5,)
    assert run._writer._unusable is None  # the child imported it


@pytest.fixture
def ghost() -> Iterator[None]:
    """A scorer whose module exists in this process only: pickled by name, not importable."""
    module = types.ModuleType("ghost_scorers")
    cls = type("Ghost", (Shouting,), {"__module__": "ghost_scorers", "name": "test-ghost"})
    module.Ghost = cls  # type: ignore[attr-defined]
    sys.modules["ghost_scorers"] = module
    scorers.register("test-ghost")(cls)
    yield
    scorers._items.pop("test-ghost")
    del sys.modules["ghost_scorers"]


async def test_a_child_that_cannot_rebuild_the_scorers_hands_over_to_a_thread(
    tmp_path: Path, ghost: None
) -> None:
    store = make_store(tmp_path / "a.db")
    run = make_runner(store, Scripted("p"), samples=5)
    outcome = await run.run()
    assert outcome.status == "complete" and outcome.stored == 5
    assert run._writer._unusable is not None and "ghost_scorers" in run._writer._unusable
    with sqlite3.connect(tmp_path / "a.db") as conn:
        (count,) = conn.execute("SELECT count(*) FROM scores WHERE scorer = 'test-ghost'")
    assert count == (5,)


def test_an_in_memory_database_is_written_from_a_thread() -> None:
    engine = make_engine("sqlite://")
    ensure_schema(engine)
    run = make_runner(Store(engine), Scripted("p"))
    assert run._writer.in_process


# --- kill -9 of the round's process --------------------------------------------------------

ROUND = r"""
import asyncio, json, sys
sys.path.insert(0, sys.argv[2])
import test_writer as t
from pathlib import Path

class Progress:
    def __init__(self, run):
        self.run = run
    def planned(self, key, count):
        print(json.dumps({"writer": self.run._writer._link.worker.pid}), flush=True)
    def answered(self, key, ok):
        pass

async def main():
    store = t.Store(t.make_engine(f"sqlite:///{sys.argv[1]}"))
    run = t.make_runner(store, t.Scripted("p", delay_s=0.002), samples=200, provider_id=1)
    run.progress = Progress(run)
    writer, put, send, sent = run._writer, run._writer.put, run._writer._send_outgoing, []
    async def put_and_tell(exchange):
        sent.append(exchange[3])
        await put(exchange)
    def send_and_tell():
        send()
        if writer._link._out.get_write_buffer_size() == 0:  # all put so far are in the pipe
            print(json.dumps({"in_pipe": sent}), flush=True)
    writer.put, writer._send_outgoing = put_and_tell, send_and_tell
    await run.run()

asyncio.run(main())
"""


def process_state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


@pytest.mark.slow
def test_kill_9_of_the_round_loses_nothing_the_child_received(tmp_path: Path) -> None:
    """The child's commits are held back by a lock on the database while the round sends
    everything; the round's process is killed; the child still commits every answer that
    was written to its pipe (the kernel's, not the event loop's buffer), and exits."""
    path = tmp_path / "a.db"
    store = make_store(path)
    assert store.upsert_provider("m", "p") == 1
    store.engine.dispose()
    lock = sqlite3.connect(path, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")  # no commit from the child until released
    proc = subprocess.Popen(
        [sys.executable, "-c", ROUND, str(path), str(Path(__file__).parent)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    writer, in_pipe = None, []
    try:
        for line in proc.stdout:
            event = json.loads(line)
            writer = event.get("writer", writer)
            in_pipe = event.get("in_pipe", in_pipe)
            if len(in_pipe) >= 100:
                break
        assert stored_indexes_unlocked(lock) == []  # nothing committed yet
        proc.kill()
        proc.wait()
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert writer is not None and len(in_pipe) >= 100
    deadline = time.monotonic() + 30
    while process_state(writer) not in (None, "Z") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process_state(writer) in (None, "Z"), "the writer lingers after its parent died"
    stored = stored_indexes(path)
    assert set(in_pipe) <= set(stored) and len(stored) == len(set(stored))


def stored_indexes_unlocked(lock: sqlite3.Connection) -> list[int]:
    return [i for (i,) in lock.execute("SELECT sample_index FROM samples")]
