"""The round's writer: it redacts, scores and stores every answer, in a process of its own.

Why a process: sending requests (the event loop: HTTP, parsing, limits) and storing answers
(redaction, scoring about 0.1 ms and inserting about 0.3 ms a sample) are both Python. As a
thread, the writer took turns with the event loop on one GIL, so a round spent twice the CPU
of a bare HTTP loop on a single core. In a child process it runs on another core, and the
round's process only pickles each answer (about 10 us) and writes it to a pipe.

The child is a fresh interpreter (`python -c ...`: fork and exec, like multiprocessing's
'spawn', never a bare fork of a process with threads and an event loop; multiprocessing
itself would also re-run the parent's `__main__` in it). Its setup, database URL and the
redactor's secret values included, comes through its stdin pipe: never argv, the
environment or a file.

Durability: answers are written to the pipe within `SEND_EVERY_S` of their arrival; the
child commits whatever has arrived whenever the pipe runs dry (at most about `WRITE_BATCH`
samples a transaction, a group commit) and acknowledges each commit. Should the round's
process die, even by SIGKILL, the child reads the pipe to its end (EOF), commits that and
exits (it also exits once its parent is gone should the pipe never reach EOF; it ignores
SIGINT and SIGTERM, which are the round's to handle); only the answers of the last few
milliseconds, not written yet, die with the process, as answers still in flight do. Should
the child die, the round is stopped (interrupted: "writer process died") and the answers it
had not acknowledged, and those still to come, are stored by the same code in a thread of
the round's process (a sample stored twice is skipped: see `Store.add_samples`).

The same code serves in a thread from the start when a child cannot open the database (an
in-memory SQLite one) or rebuild the scorers (one defined in `__main__`), or when asked to.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pickle
import signal
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import structlog
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from auditor import logs
from auditor.records import CompletionResponse, ProbeCase
from auditor.scorers import Scorer, score_all, scorers
from auditor.secrets import Redactor
from auditor.storage.repository import NewSample, Store, sample_values

log = structlog.get_logger(__name__)

WRITE_BATCH = 256
"""At most this many answers (about) are committed in one transaction."""

PIPE_BYTES = 1 << 20
"""The pipe to the writer holds this much (Linux's limit for an unprivileged process; 64 KiB
where it cannot be set): about 1,500 answers. It takes what comes while the child starts
(about a second) or a commit is slow, and, being the kernel's, survives the round's process:
an answer written to it is stored even if the process is killed the next instant. Beyond it,
workers wait (the event loop buffers at most asyncio's 64 KiB more)."""

SEND_EVERY_S = 0.005
"""Answers are written to the pipe together, at most this long after they arrive."""

STORAGE_RETRY_S = 900.0
"""How long the writer keeps retrying a commit the database refuses for a reason that
passes (`transient`: unreachable, restarting, disk full) before the round fails with a
storage error. Longer than a database restart or a disk being cleaned up."""

RETRY_FIRST_S, RETRY_MAX_S = 0.5, 5.0
"""The wait after a first failed commit, doubling to at most this."""

PROFILE_ENV = "AUDITOR_WRITER_PROFILE"
"""A path: the child writes its cProfile statistics there (bench/overhead.py --profile)."""

Exchange = tuple[int, str, str, int, float | None, CompletionResponse]
"""One answer as it goes to the writer: provider id, probe hash, probe id, sample index,
cost and the response as received (redacted by the writer)."""

_HEADER = struct.Struct("!i")  # multiprocessing.connection's framing: a length, the bytes


@dataclass
class WriterSetup:
    """What the writer needs, sent to the child once."""

    database: str
    round_id: str
    cases: dict[str, ProbeCase]
    secrets: list[str]
    providers: dict[int, str]  # provider id -> endpoint name, for the logs
    scorers: list[tuple[str, type[Scorer]]]
    parent_pid: int
    log_level: str | None = None
    log_json: bool | None = None


class SampleWriter:
    """The round's single writer, in a child process (or a thread, see the module's doc).

    `put` an answer and it is stored as soon as possible; `flush` waits until everything put
    so far is committed (the sequential policy reads the database between looks); `close`
    waits for the rest. A storage error is kept in `error` and, like the child's death
    (`died`), reported once through `on_failure`: the runner stops the round."""

    def __init__(
        self,
        store: Store,
        round_id: str,
        cases: dict[str, ProbeCase],
        redactor: Redactor,
        providers: dict[int, str],
        on_failure: Callable[[str], None],
        in_process: bool = False,
    ) -> None:
        self.store = store
        self.on_failure = on_failure
        log_level, log_json = logs.configured()
        self.setup = WriterSetup(
            database=store.engine.url.render_as_string(hide_password=False),
            round_id=round_id,
            cases=cases,
            secrets=list(redactor.secrets),
            providers=providers,
            scorers=scorers.items(),
            parent_pid=os.getpid(),
            log_level=log_level,
            log_json=log_json,
        )
        reason = "asked to" if in_process else _cannot_spawn(store, self.setup)
        self.in_process = reason is not None
        if reason is not None:
            log.info("writer.in_process", round_id=round_id, reason=reason)
        self.stored = 0
        self.error: BaseException | None = None
        self.died: str | None = None
        self._sent = 0  # answers put, each numbered
        self._acked = 0  # the last one committed (or refused after a storage error)
        self._unacked: deque[tuple[int, bytes]] = deque()
        self._progress = asyncio.Event()  # an ack came, or a writer ended
        self._link: _Link | None = None
        self._gone = False  # no writer left: the child died, and then the thread did
        self._unusable: str | None = None  # why the child could not set itself up
        self._outgoing: list[bytes] = []  # put, not written yet
        self._sending: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        try:
            self._link = await self._open(self.in_process)
        except OSError as exc:  # no process to be had: write from here
            log.warning("writer.in_process", round_id=self.setup.round_id, reason=repr(exc))
            self.in_process = True
            self._link = await self._open(in_process=True)

    async def put(self, exchange: Exchange) -> None:
        """Send one answer (within `SEND_EVERY_S`); waits only while the pipe to the writer
        is full (`PIPE_BYTES`). The answer is kept until its commit is acknowledged."""
        self._sent += 1
        payload = pickle.dumps((self._sent, exchange), protocol=pickle.HIGHEST_PROTOCOL)
        self._unacked.append((self._sent, payload))
        self._outgoing.append(payload)
        if self._sending is None:
            loop = asyncio.get_running_loop()
            self._sending = loop.call_later(SEND_EVERY_S, self._send_outgoing)
        link = self._link
        if link is not None:
            await link.writable()

    def _send_outgoing(self) -> None:
        """Write the answers put since the last write, in one write: each write to the pipe
        wakes the writer, which costs the event loop far more than the bytes."""
        if self._sending is not None:
            self._sending.cancel()
            self._sending = None
        link, outgoing = self._link, self._outgoing
        self._outgoing = []
        if link is not None and link.live:  # else a replacement will send them
            link.write(*outgoing)

    async def flush(self) -> None:
        """Wait until everything put so far is committed (or refused: see `error`)."""
        self._send_outgoing()
        while self._acked < self._sent and not self._gone:
            self._progress.clear()
            await self._progress.wait()

    async def close(self) -> None:
        """Let the writer commit the rest and end; wait for it."""
        while self._link is not None:
            link = self._link
            await self.flush()
            if self._link is not link:
                continue  # the child died meanwhile: close its replacement
            link.close_input()
            await link.finished()
            if self._link is link:
                self._link = None

    async def _open(self, in_process: bool) -> _Link:
        from_parent, to_child = os.pipe()
        with contextlib.suppress(OSError, AttributeError):  # Linux only
            fcntl.fcntl(to_child, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        from_child, to_parent = os.pipe()
        worker: subprocess.Popen[bytes] | threading.Thread
        if in_process:
            inbox = Connection(from_parent, writable=False)
            outbox = Connection(to_parent, readable=False)
            worker = threading.Thread(
                target=serve, args=(inbox, outbox, self.store), name="auditor-writer", daemon=True
            )
            worker.start()
        else:
            try:
                worker = subprocess.Popen(
                    [sys.executable, "-c", "from auditor.storage.writer import main; main()"],
                    stdin=from_parent,
                    stdout=to_parent,
                    close_fds=True,
                )
            except OSError:
                os.close(to_child)
                os.close(from_child)
                raise
            finally:
                os.close(from_parent)
                os.close(to_parent)
        link = _Link(worker, self._on_message)
        await link.connect(to_child, from_child)
        link.write(pickle.dumps(sys.path), pickle.dumps(self.setup))
        link.reader = asyncio.create_task(self._read(link))
        return link

    def _on_message(self, message: tuple[Any, ...]) -> None:
        if message[0] == "ack":
            _, last, stored = message
            self._acked = max(self._acked, last)
            self.stored += stored
            while self._unacked and self._unacked[0][0] <= last:
                self._unacked.popleft()
        elif message[0] == "unusable":
            self._unusable = message[1]
        elif message[0] == "error" and self.error is None:
            _, error, text = message
            self.error = error
            log.error("writer.storage_failed", round_id=self.setup.round_id, error=text)
            self.on_failure(f"storage error: {type(error).__name__}")
        self._progress.set()

    async def _read(self, link: _Link) -> None:
        """Acks until the writer's end. An end before `close` means the writer died (or, a
        child, could not set itself up): a child is replaced by a thread."""
        await link.read_all()
        if link.closing:
            return
        code = await link.finished()
        if self._unusable is not None and not link.in_process:
            log.warning("writer.in_process", round_id=self.setup.round_id, reason=self._unusable)
            await self._replace()
            return
        what = "thread" if link.in_process else "process"
        reason = f"writer {what} died" + ("" if code is None else f" (exit code {code})")
        log.error(
            "writer.died",
            round_id=self.setup.round_id,
            reason=reason,
            unacknowledged=len(self._unacked),
        )
        if self.died is None:
            self.died = reason
            self.on_failure(reason)
        if link.in_process:
            self._gone = True
            self.error = self.error or RuntimeError(reason)
            self._link = None
            self._progress.set()
            return
        await self._replace()

    async def _replace(self) -> None:
        """Go on in a thread, starting with what the child had not acknowledged, in order."""
        replacement = await self._open(in_process=True)
        replacement.write(*(payload for _, payload in self._unacked))
        self._outgoing = []  # all in the unacknowledged ones
        self._link = replacement


class _Link:
    """The round's ends of the two pipes to one writer (the child, or a thread)."""

    def __init__(
        self,
        worker: subprocess.Popen[bytes] | threading.Thread,
        on_message: Callable[[tuple[Any, ...]], None],
    ) -> None:
        self.worker = worker
        self.in_process = isinstance(worker, threading.Thread)
        self.on_message = on_message
        self.live = False
        self.closing = False
        self.reader: asyncio.Task[None] | None = None
        self._out: asyncio.WriteTransport | None = None
        self._in = asyncio.StreamReader(limit=1 << 30)
        self._flow = _Flow()

    async def connect(self, write_fd: int, read_fd: int) -> None:
        loop = asyncio.get_running_loop()
        reader = self._in
        out, _ = await loop.connect_write_pipe(lambda: self._flow, os.fdopen(write_fd, "wb", 0))
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", 0)
        )
        self._out = out
        self.live = True

    def write(self, *payloads: bytes) -> None:
        """Messages, framed as multiprocessing.connection frames them, in one write."""
        assert self._out is not None
        if not self._out.is_closing():
            self._out.write(b"".join(_HEADER.pack(len(p)) + p for p in payloads))

    async def writable(self) -> None:
        await self._flow.resumed.wait()

    def close_input(self) -> None:
        """The writer reads to the end, commits, acknowledges and ends."""
        self.closing = True
        self.live = False
        if self._out is not None:
            self._out.close()

    async def read_all(self) -> None:
        while True:
            try:
                (size,) = _HEADER.unpack(await self._in.readexactly(_HEADER.size))
                if size == -1:
                    (size,) = struct.unpack("!Q", await self._in.readexactly(8))
                message = pickle.loads(await self._in.readexactly(size))
            except (asyncio.IncompleteReadError, ConnectionError):
                self.live = False
                return
            self.on_message(message)

    async def finished(self) -> int | None:
        """Wait for the writer to end: its exit code, for a child."""
        if self.reader is not None and self.reader is not asyncio.current_task():
            await self.reader
        if self._out is not None:
            self._out.close()
        if isinstance(self.worker, threading.Thread):
            await asyncio.to_thread(self.worker.join)
            return None
        return await asyncio.to_thread(self.worker.wait)


class _Flow(asyncio.Protocol):
    """Write-side flow control: `resumed` is clear while the pipe's buffer is full."""

    def __init__(self) -> None:
        self.resumed = asyncio.Event()
        self.resumed.set()

    def pause_writing(self) -> None:
        self.resumed.clear()

    def resume_writing(self) -> None:
        self.resumed.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.resumed.set()


def _cannot_spawn(store: Store, setup: WriterSetup) -> str | None:
    """Why a child process could not do this round's writing, if it could not."""
    url = store.engine.url
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        return "in-memory database"
    for name, cls in setup.scorers:
        try:
            portable = cls.__module__ != "__main__" and pickle.loads(pickle.dumps(cls)) is cls
        except Exception:
            portable = False
        if not portable:
            return f"scorer {name!r} cannot be imported by another process"
    return None


# --- the writer's side -----------------------------------------------------------------------


def main() -> None:
    """The child: the setup and then answers on stdin, acks on stdout."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the round's process decides when to stop
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # and the pipe's end ends this process
    acks = os.dup(1)
    os.dup2(2, 1)  # anything printed goes to stderr, not into the acks
    inbox, outbox = Connection(os.dup(0), writable=False), Connection(acks, readable=False)
    profile_to = os.environ.get(PROFILE_ENV)
    if not profile_to:
        serve(inbox, outbox)
        return
    import cProfile

    profiler = cProfile.Profile()
    profiler.runcall(serve, inbox, outbox)
    profiler.dump_stats(profile_to)


def serve(inbox: Connection, outbox: Connection, store: Store | None = None) -> None:
    """Store what comes through `inbox` until it ends, acknowledging each commit; with no
    `store` (the child), open the database and set up the logs as the round's process has."""
    try:
        path: list[str] = pickle.loads(inbox.recv_bytes())
        if store is None:
            sys.path[:] = path  # the scorers' modules import as they do in the round's process
        setup: WriterSetup = pickle.loads(inbox.recv_bytes())
    except EOFError:
        return
    except Exception as exc:  # a scorer's module that does not import here, say
        _send(outbox, ("unusable", "".join(traceback.format_exception_only(exc)).strip()))
        return
    if store is None:
        from auditor.storage.db import make_engine

        logs.configure(setup.log_level, setup.log_json, Redactor(setup.secrets))
        store = Store(make_engine(setup.database))
    writing = _Writing(store, setup)
    in_child = setup.parent_pid != os.getpid()
    batch: list[Exchange] = []
    last, more, heard = 0, True, True
    while more:
        if not batch and not inbox.poll(1.0):
            if in_child and os.getppid() != setup.parent_pid:
                more = False  # the round's process is gone, and the pipe did not end
            continue
        try:
            last, exchange = pickle.loads(inbox.recv_bytes())
            batch.append(exchange)
        except EOFError:
            more = False
        if more and len(batch) < WRITE_BATCH and inbox.poll(0):
            continue  # more has arrived: into the same transaction
        if batch:
            stored = writing.store_batch(batch)
            batch = []
            if heard:  # once the round's process is gone, the pipe is still read to its end
                heard = writing.report(outbox) and _send(outbox, ("ack", last, stored))
    if in_child:
        store.engine.dispose()
    for end in (inbox, outbox):
        with contextlib.suppress(OSError):
            end.close()


_SQLITE_TRANSIENT = {5, 6, 10, 13, 14}  # SQLITE_BUSY, _LOCKED, _IOERR, _FULL, _CANTOPEN


def transient(exc: BaseException) -> bool:
    """A storage error that passes by itself: the database unreachable or restarting (its
    connection lost), or its disk full ("database or disk is full", DiskFull). Not a
    constraint or a programming error, which retrying would only repeat."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    orig = getattr(exc, "orig", None)
    if isinstance(orig, sqlite3.Error):  # "no such table" is an OperationalError too
        return (getattr(orig, "sqlite_errorcode", 0) & 0xFF) in _SQLITE_TRANSIENT
    return isinstance(exc, OperationalError | InterfaceError)


def _send(outbox: Connection, message: tuple[Any, ...]) -> bool:
    try:
        outbox.send_bytes(pickle.dumps(message))
    except OSError:  # the round's process is gone: what is stored stays stored
        return False
    return True


class _Writing:
    """Answers to rows: redacted, scored, stored. After a storage error, answers are only
    acknowledged (the round is stopping; its workers must not wait)."""

    def __init__(self, store: Store, setup: WriterSetup) -> None:
        self.store = store
        self.setup = setup
        self.redactor = Redactor(setup.secrets)
        self.failed: BaseException | None = None
        self.retry_s = STORAGE_RETRY_S
        self._reported = False

    def store_batch(self, batch: list[Exchange]) -> int:
        """Store a batch in one transaction; how many were new (not stored before)."""
        if self.failed is not None:
            return 0
        rows = [self._row(exchange) for exchange in batch]
        try:
            ids = self._add_retrying(rows)
        except Exception as exc:
            self.failed = exc
            return 0
        round_id, names = self.setup.round_id, self.setup.providers
        for exchange, sample_id in zip(batch, ids, strict=True):
            provider_id, _, probe_id, _, _, response = exchange
            log.debug(
                "sample.stored",
                round_id=round_id,
                provider=names.get(provider_id),
                probe_id=probe_id,
                ok=response.ok,
                error_class=response.error_class,
                duplicate=sample_id is None,
            )
        return sum(1 for i in ids if i is not None)

    def _add_retrying(self, rows: list[NewSample]) -> list[int | None]:
        """`add_samples`, again and again while the database is unreachable or its disk
        full (`transient`), for at most `STORAGE_RETRY_S`: the answers wait here (and in the
        pipe) instead of being lost. A commit whose acknowledgement was lost is not stored
        twice: the retry finds its samples and skips them."""
        deadline = time.monotonic() + self.retry_s
        wait_s, failures = RETRY_FIRST_S, 0
        while True:
            try:
                ids = self.store.add_samples(rows)
            except Exception as exc:
                if not transient(exc) or time.monotonic() + wait_s > deadline:
                    raise
                failures += 1
                if failures == 1:
                    log.warning(
                        "writer.storage_retry",
                        round_id=self.setup.round_id,
                        error=f"{type(exc).__name__}: {exc}"[:300],
                        retry_for_s=self.retry_s,
                    )
                time.sleep(wait_s)
                wait_s = min(wait_s * 2, RETRY_MAX_S)
                continue
            if failures:
                log.warning("writer.storage_back", round_id=self.setup.round_id, failures=failures)
            return ids

    def report(self, outbox: Connection) -> bool:
        """Send the storage error, once; False when the round's process is gone."""
        if self.failed is None or self._reported:
            return True
        self._reported = True
        text = "".join(traceback.format_exception_only(self.failed)).strip()
        try:
            error = pickle.loads(pickle.dumps(self.failed))
        except Exception:
            error = RuntimeError(text)
        return _send(outbox, ("error", error, text))

    def _row(self, exchange: Exchange) -> NewSample:
        provider_id, probe_hash, probe_id, sample_index, cost, response = exchange
        response = self.redactor.redact_response(response)
        values = sample_values(
            self.setup.round_id, provider_id, probe_hash, probe_id, sample_index, response, cost
        )
        return values, score_all(self.setup.cases[probe_hash], response, self.setup.scorers)
