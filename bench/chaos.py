"""Chaos soak: the real daemon, for an hour, while its surroundings fail as they do in production.

Two `auditor daemon` instances share a PostgreSQL database of their own (a private cluster
this bench creates on a free port, never the server at 5432): one leads, one stands by. A
third runs on SQLite on a small tmpfs the bench mounts. All three run a fast schedule against
the model-free echo fleet, two of its members behind HTTP proxies that log every answer they
relay (one of them injects provider faults), and alert two webhook sinks: real HTTP servers
verifying the Standard Webhooks signatures. A fault injector, driven by `--seed`, does in turn:

- PostgreSQL stopped for 30 s, then for 5 minutes;
- the webhook receivers down for 10 minutes, then answering 500, then 429 with Retry-After,
  then 410 for one sink;
- the provider answering 429 storms, slow drips (one byte a second), truncated bodies,
  connection resets and 10 MB bodies;
- the leader killed with SIGKILL, and later with SIGTERM, each during a round;
- the SQLite daemon's disk filled, then freed.

Then it checks, from the databases, the proxies' and the receivers' logs, and the daemons'
own logs: every answered request stored once; every round complete or interrupted, none
left running; every incident event delivered to each live sink at least once (duplicates
counted by `webhook-id`); no schedule skipped beyond its grace without a fault to explain
it; the standby taking over within the lock retry; RSS and open file descriptors flat;
`/readyz` not ready while the database is down and ready after. Writes
bench/results/chaos.json.

    .venv/bin/python bench/chaos.py [--minutes 60] [--seed 18]   # needs root (mount, runuser)
    .venv/bin/python bench/chaos.py --quick --minutes 12         # every duration / 5
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import yaml
from auditor_fleet import FleetMember, FleetSpec
from auditor_fleet.process import FleetHandle, running_fleet
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

ROOT = Path(__file__).resolve().parents[1]
AUDITOR = str(Path(sys.executable).parent / "auditor")
PG_BIN = Path("/usr/lib/postgresql/15/bin")
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MODEL = "smollm2-135m-instruct"
CASES: list[dict[str, Any]] = [
    {"id": "add", "prompt": "What is 2 + 2? Answer with one number.", "expect": {"number": 4}},
    {"id": "capital", "prompt": "Capital of France? One word."},
    {"id": "poem", "prompt": "A line about the sea.", "params": {"temperature": 1}},
]
SUITE = {
    "suite": "tiny",
    "defaults": {"params": {"temperature": 0, "max_tokens": 16}},
    "cases": CASES,
}
EVERY_S = 10.0  # the schedule: one round of `tiny` every 10 s on each database
LOCK_RETRY_S = 2.0
SHUTDOWN_DEADLINE_S = 5.0
STALE_FACTOR = 3.0
MAX_BACKOFF_S = 30.0
BIG_BYTES = 10 * 1024 * 1024
BIG_PER_DAEMON = 2  # 10 MB answers per daemon in the window (each is stored: 20 MB a row)
SINKS = ("ops", "audit")  # `audit` is the one answering 410
FLAP_S = 35.0  # provider `flap` fails, then recovers, then fails... every FLAP_S


def utc() -> datetime:
    return datetime.now(UTC)


def iso(t: datetime | None) -> str | None:
    return t.isoformat().replace("+00:00", "Z") if t else None


def parse_ts(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class JsonLog:
    """A thread-safe list of events, also appended to a JSONL file as they come."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._file = path.open("a")

    def add(self, **event: Any) -> None:
        event.setdefault("t", iso(utc()))
        with self._lock:
            self.events.append(event)
            self._file.write(json.dumps(event) + "\n")
            self._file.flush()

    def close(self) -> None:
        self._file.close()


# --- the private PostgreSQL cluster ----------------------------------------------------------


class PrivatePostgres:
    """A PostgreSQL 15 cluster of this bench alone, on 127.0.0.1 only, stopped and started at
    will (the shared server on 5432 is never touched)."""

    def __init__(self, work: Path) -> None:
        self.dir = work / "pg"
        self.data = self.dir / "data"
        self.port = free_port()
        self.dir.mkdir()
        shutil.chown(self.dir, "postgres", "postgres")
        self._pg("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE chaos")

    def _pg(self, tool: str, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(PG_BIN / tool), *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.dir,
        )

    def dsn(self, db: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/chaos"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._pg(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.dir / "log"),
            "-w",
            "start",
        )

    def stop(self) -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn("chaos"), connect_timeout=5) as conn:
            return list(conn.execute(sql, params).fetchall())


# --- the provider proxies ----------------------------------------------------------------------


def prompt_of(body: bytes) -> str:
    try:
        messages = json.loads(body).get("messages") or []
        return str(messages[-1].get("content", ""))
    except (ValueError, AttributeError, IndexError):
        return ""


class ProviderProxy:
    """In front of one echo member: relays requests, or misbehaves as `mode` says, and logs
    every exchange (which daemon sent it, the prompt, what was done, whether a whole 200
    answer went out: an answered request)."""

    def __init__(self, name: str, upstream: str, log: JsonLog) -> None:
        self.name, self.log = name, log
        self.upstream = upstream.removeprefix("http://").split("/")[0]
        self.mode = "pass"
        self.big_sent: Counter[str] = Counter()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        threading.Thread(target=lambda: self.server.serve_forever(0.05), daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def forward(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        host, port = self.upstream.split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            sent = {k: v for k, v in headers.items() if k.lower() not in ("host", "content-length")}
            conn.request("POST", path, body=body, headers=sent)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return None

            def do_GET(self) -> None:
                self._send(200, b'{"object": "list", "data": []}')

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                daemon = self.headers.get("x-chaos-daemon", "?")
                mode = proxy.mode
                event = {
                    "provider": proxy.name,
                    "daemon": daemon,
                    "prompt": prompt_of(body),
                    "mode": mode,
                    "t": iso(utc()),
                }
                try:
                    status, answered = proxy.serve(self, mode, body, daemon)
                except OSError:
                    status, answered = 0, False  # the client went away
                proxy.log.add(**event, status=status, answered=answered)

            def _send(self, status: int, data: bytes, extra: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()

        return Handler

    def serve(self, h: Any, mode: str, body: bytes, daemon: str) -> tuple[int, bool]:
        """One exchange in `mode`; (status sent, whether a whole 200 answer went out)."""
        if mode == "500":
            h._send(500, b'{"error": {"message": "flapping"}}')
            return 500, False
        if mode == "429":
            h._send(429, b'{"error": {"message": "slow down"}}', {"retry-after": "1"})
            return 429, False
        if mode == "reset":
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.close_connection = True
            h.connection.close()
            return 0, False
        status, data = self.forward(h.path, body, dict(h.headers.items()))
        if mode == "big" and status == 200 and self.big_sent[daemon] < BIG_PER_DAEMON:
            self.big_sent[daemon] += 1
            answer = json.loads(data)
            answer["choices"][0]["message"]["content"] = "sea " * (BIG_BYTES // 4)
            data = json.dumps(answer).encode()
        if mode == "truncated":
            h.send_response(status)
            h.send_header("content-type", "application/json")
            h.send_header("content-length", str(len(data)))
            h.end_headers()
            h.wfile.write(data[: len(data) // 2])
            h.wfile.flush()
            h.close_connection = True
            return status, False
        if mode == "drip":
            h.send_response(status)
            h.send_header("content-type", "application/json")
            h.send_header("content-length", str(len(data)))
            h.end_headers()
            for i in range(len(data)):
                h.wfile.write(data[i : i + 1])
                h.wfile.flush()
                time.sleep(1.0)
            return status, status == 200
        h._send(status, data)
        return status, status == 200


# --- the webhook receivers ---------------------------------------------------------------------


class Sink:
    """A webhook receiver on a fixed port: verifies the signature (standardwebhooks), logs
    every request, answers as `mode` says (`up`, `500`, `429`, `410`), or is `down`: not
    listening at all."""

    def __init__(self, name: str, log: JsonLog) -> None:
        self.name, self.log = name, log
        self.port = free_port()
        self.mode = "up"
        self.hook = Webhook(SECRET)
        self.server: ThreadingHTTPServer | None = None
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{self.name}"

    def up(self) -> None:
        if self.server is None:
            self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
            self.server.daemon_threads = True
            server = self.server
            threading.Thread(target=lambda: server.serve_forever(0.05), daemon=True).start()
        self.mode = "up"

    def down(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        self.mode = "down"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    event = sink.hook.verify(body, headers)
                    verified = True
                except WebhookVerificationError:
                    event, verified = {}, False
                mode = sink.mode
                status = {"500": 500, "429": 429, "410": 410}.get(mode, 204)
                if not verified:
                    status = 400
                incident = (event.get("data") or {}).get("incident") or {}
                sink.log.add(
                    sink=sink.name,
                    msg_id=headers.get("webhook-id", ""),
                    verified=verified,
                    type=event.get("type"),
                    incident_id=incident.get("id"),
                    status=status,
                )
                self.send_response(status)
                if status == 429:
                    self.send_header("retry-after", "5")
                self.send_header("content-length", "0")
                self.end_headers()

        return Handler


# --- the daemons -------------------------------------------------------------------------------


@dataclass
class Incarnation:
    """One daemon process: which instance, its pid, its log, when it started and ended."""

    instance: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    started: datetime
    ended: datetime | None = None
    exit_code: int | None = None
    port: int | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out

    def find_port(self) -> int | None:
        if self.port is None:
            for e in self.events():
                if e.get("event") == "daemon.started":
                    self.port = int(e["port"])
        return self.port


class Daemons:
    """Starts, kills and restarts the daemon instances; keeps every incarnation."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.all: list[Incarnation] = []
        self.live: dict[str, Incarnation] = {}

    def start(self, instance: str) -> Incarnation:
        n = sum(1 for i in self.all if i.instance == instance)
        log_path = self.work / f"daemon-{instance}-{n}.log"
        env = {**os.environ, "CHAOS_HOOK_SECRET": SECRET, "AUDITOR_LOG_LEVEL": "info"}
        proc = subprocess.Popen(
            [AUDITOR, "daemon", "-c", f"providers-{instance}.yaml"],
            cwd=self.work,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log_path.open("w"),
        )
        inc = Incarnation(instance, proc, log_path, utc())
        self.all.append(inc)
        self.live[instance] = inc
        return inc

    def reap(self) -> list[Incarnation]:
        """Incarnations that exited since the last call (none should, on their own)."""
        gone = []
        for name, inc in list(self.live.items()):
            code = inc.proc.poll()
            if code is not None:
                inc.ended, inc.exit_code = utc(), code
                del self.live[name]
                gone.append(inc)
        return gone

    def by_pid(self, pid: int) -> Incarnation | None:
        return next((i for i in self.live.values() if i.pid == pid), None)

    def stop_all(self) -> None:
        for inc in self.live.values():
            with contextlib.suppress(ProcessLookupError):
                inc.proc.send_signal(signal.SIGTERM)
        for inc in list(self.live.values()):
            try:
                inc.exit_code = inc.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                inc.proc.kill()
                inc.exit_code = inc.proc.wait()
            inc.ended = utc()
        self.live.clear()


def rss_kib(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def readyz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=8) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


class Watcher:
    """Samples every live daemon's RSS and open descriptors, and polls its /readyz."""

    def __init__(self, daemons: Daemons, sample_s: float, resources: JsonLog, ready: JsonLog):
        self.daemons, self.sample_s = daemons, sample_s
        self.resources, self.ready = resources, ready
        self.stopped = threading.Event()
        self.threads = [
            threading.Thread(target=self._sample, daemon=True),
            threading.Thread(target=self._probe, daemon=True),
        ]
        for t in self.threads:
            t.start()

    def _sample(self) -> None:
        while not self.stopped.wait(self.sample_s):
            for inc in list(self.daemons.live.values()):
                self.resources.add(
                    instance=inc.instance,
                    pid=inc.pid,
                    rss_kib=rss_kib(inc.pid),
                    fds=open_fds(inc.pid),
                )

    def _probe(self) -> None:
        while not self.stopped.wait(2.0):
            for inc in list(self.daemons.live.values()):
                port = inc.find_port()
                if port is not None:
                    self.ready.add(instance=inc.instance, pid=inc.pid, status=readyz(port))

    def stop(self) -> None:
        self.stopped.set()
        for t in self.threads:
            t.join(timeout=15)


# --- the disk ----------------------------------------------------------------------------------


class SmallDisk:
    """A tmpfs of `size_mib` the bench mounts for the SQLite daemon's database."""

    def __init__(self, path: Path, size_mib: int) -> None:
        self.path = path
        path.mkdir()
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(path)], check=True
        )
        self.filler = path / "filler"

    def fill(self) -> int:
        """Write until the file system is full; the bytes written."""
        written = 0
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            for chunk in (1 << 20, 1 << 12, 1):
                block = b"\0" * chunk
                with contextlib.suppress(OSError):
                    while True:
                        written += os.write(fd, block)
        finally:
            os.close(fd)
        return written

    def free(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.filler.unlink()

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False)


# --- the configuration -------------------------------------------------------------------------


def config_for(
    instance: str,
    database: str,
    fleet: FleetHandle,
    proxies: dict[str, ProviderProxy],
    sinks: dict[str, Sink],
) -> dict[str, Any]:
    def provider(name: str, base_url: str) -> dict[str, Any]:
        return {
            "name": name,
            "base_url": base_url,
            "model": MODEL,
            "requests_per_second": 50,
            "max_concurrency": 4,
            "timeout_s": 5,
            "headers": {"x-chaos-daemon": instance},
            "retry": {
                "max_attempts": 2,
                "backoff_base_s": 0.05,
                "backoff_max_s": 0.5,
                "max_total_s": 5,
            },
        }

    return {
        "database": database,
        "reference": {"engine": "endpoint", "base_url": fleet.base_url("ref"), "model": MODEL},
        "suites": ["tiny"],
        "probes_dir": "probes",
        "models": [
            {
                "name": MODEL,
                "providers": [
                    provider("acme", proxies["acme"].base_url),
                    provider("bolt", proxies["bolt"].base_url),
                    provider("flap", proxies["flap"].base_url),
                    provider("broken", fleet.base_url("broken")),
                ],
            }
        ],
        "schedule": [{"suite": "tiny", "every": f"{EVERY_S:g}s"}],
        "daemon": {
            "lock_retry": f"{LOCK_RETRY_S:g}s",
            "shutdown_deadline": f"{SHUTDOWN_DEADLINE_S:g}s",
            "stale_factor": STALE_FACTOR,
        },
        "server": {"host": "127.0.0.1", "port": 0},
        "alerts": {
            "max_backoff": f"{MAX_BACKOFF_S:g}s",
            "sinks": [
                {
                    "name": s.name,
                    "url": s.url,
                    "secret_env": "CHAOS_HOOK_SECRET",
                    "min_severity": "info",
                    "timeout_s": 5,
                }
                for s in sinks.values()
            ],
        },
    }


# --- the fault injector ------------------------------------------------------------------------


@dataclass
class Window:
    """One injected fault: when it started and ended, and on what."""

    fault: str
    target: str
    start: datetime
    end: datetime | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "fault": self.fault,
            "target": self.target,
            "start": iso(self.start),
            "end": iso(self.end),
            **self.detail,
        }


class Injector:
    """Runs the fault schedule: each step waits, injects, holds, restores."""

    def __init__(
        self,
        scale: float,
        rng: random.Random,
        pg: PrivatePostgres,
        disk: SmallDisk,
        proxies: dict[str, ProviderProxy],
        sinks: dict[str, Sink],
        daemons: Daemons,
    ) -> None:
        self.scale, self.rng = scale, rng
        self.pg, self.disk, self.proxies, self.sinks, self.daemons = (
            pg,
            disk,
            proxies,
            sinks,
            daemons,
        )
        self.windows: list[Window] = []
        self.flips = 0

    def wait(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds * self.scale))

    @contextlib.contextmanager
    def window(self, fault: str, target: str, **detail: Any) -> Iterator[Window]:
        w = Window(fault, target, utc(), detail=detail)
        self.windows.append(w)
        print(f"{iso(w.start)} fault {fault} on {target}", flush=True)
        try:
            yield w
        finally:
            w.end = utc()

    def hold(
        self, fault: str, target: str, seconds: float, on: Callable[[], Any], off: Callable[[], Any]
    ) -> None:
        with self.window(fault, target, seconds=round(seconds * self.scale, 1)):
            on()
            self.wait(seconds)
            off()

    def flap(self, stop: threading.Event) -> None:
        """In the background, all along: provider `flap` fails (HTTP 500) and recovers every
        `FLAP_S`, so incidents open and resolve, and alerts flow, through every fault."""
        flapping = self.proxies["flap"]
        while not stop.wait(FLAP_S):
            flapping.mode = "500" if flapping.mode == "pass" else "pass"
            self.flips += 1

    def run(self) -> None:
        self.wait(120)  # warm-up: the baseline
        self.postgres()
        self.webhooks()
        self.providers()
        self.leader_and_disk()

    def postgres(self) -> None:
        # The 30-s stop is never scaled: it is shorter than the stale limit, and longer than
        # the readiness probe's timeout.
        for seconds, scaled in ((30.0, False), (300.0, True)):
            hold_s = seconds * (self.scale if scaled else 1.0)
            with self.window("postgres_stopped", "postgresql", seconds=round(hold_s, 1)):
                self.pg.stop()
                time.sleep(hold_s)
                self.pg.start()
            self.wait(150)

    def webhooks(self) -> None:
        both = list(self.sinks.values())

        def down() -> None:
            for s in both:
                s.down()

        def up() -> None:
            for s in both:
                s.up()

        self.hold("receiver_down", "ops+audit", 600, down, up)
        self.wait(90)
        for mode in ("500", "429"):

            def on(mode: str = mode) -> None:
                for s in both:
                    s.mode = mode

            self.hold(f"receiver_{mode}", "ops+audit", 150, on, up)
            self.wait(60)
        gone = self.sinks["audit"]
        with self.window("receiver_410", "audit"):
            gone.mode = "410"
            self.wait(60)
        self.wait(30)

    def providers(self) -> None:
        faults = ["429", "drip", "truncated", "reset"]
        self.rng.shuffle(faults)
        faults.append("big")  # last: its rounds take minutes, the others need rounds
        bolt = self.proxies["bolt"]
        for mode in faults:

            def on(mode: str = mode) -> None:
                bolt.mode = mode

            def off() -> None:
                bolt.mode = "pass"

            self.hold(f"provider_{mode}", "bolt", 120, on, off)
            self.wait(45 + self.rng.uniform(0, 30))

    def leader_and_disk(self) -> None:
        self.kill_leader(signal.SIGKILL)
        self.wait(120)
        with self.window("disk_full", "sqlite daemon (C)") as w:
            w.detail["bytes_filled"] = self.disk.fill()
            self.wait(180)
            self.disk.free()
        self.wait(60)
        self.kill_leader(signal.SIGTERM)
        self.wait(120)

    def kill_leader(self, sig: signal.Signals) -> None:
        """Wait for the PostgreSQL leader to be in a round, then signal it; restart the
        instance as the new standby a little later."""
        deadline = time.monotonic() + 120
        leader = None
        while time.monotonic() < deadline and leader is None:
            with contextlib.suppress(psycopg.Error):
                rows = self.pg.query(
                    "SELECT pid FROM rounds WHERE status = 'running'"
                    " ORDER BY started_at DESC LIMIT 1"
                )
                if rows:
                    leader = self.daemons.by_pid(int(rows[0][0]))
            if leader is None:
                time.sleep(0.1)
        if leader is None:
            print("no running round of a live PostgreSQL daemon found", flush=True)
            return
        with self.window(
            f"leader_{sig.name}", f"daemon {leader.instance} (pid {leader.pid})", pid=leader.pid
        ) as w:
            leader.proc.send_signal(sig)
            code = leader.proc.wait(timeout=120)
            w.detail["exit_code"] = code
            w.detail["exit_s"] = round((utc() - w.start).total_seconds(), 2)
        self.daemons.reap()
        self.wait(30)
        self.daemons.start(leader.instance)


# --- the checks --------------------------------------------------------------------------------


class Db:
    """Read access to one of the databases after the run."""

    def __init__(self, name: str, url: str) -> None:
        from sqlalchemy import create_engine

        self.name = name
        self.engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))

    def rows(self, sql: str, **params: Any) -> list[Any]:
        from sqlalchemy import text

        with self.engine.connect() as conn:
            return list(conn.execute(text(sql), params).all())


def overlaps(w: Window, start: datetime, end: datetime, slack_s: float = 0.0) -> bool:
    w_end = (w.end or utc()) + timedelta(seconds=slack_s)
    return w.start <= end and start <= w_end


def check_answers(db: Db, daemons: set[str], proxy_log: list[dict[str, Any]]) -> dict[str, Any]:
    """Every whole 200 answer a proxy relayed to one of `daemons` is a stored sample: matched
    by provider and prompt to the nearest sample started within 5 s."""
    prompts = {c["prompt"]: c["id"] for c in CASES}
    stored: dict[tuple[str, str], list[datetime]] = defaultdict(list)
    for provider, probe, started in db.rows(
        "SELECT p.name, s.probe_id, s.started_at FROM samples s"
        " JOIN providers p ON p.id = s.provider_id"
        " WHERE p.name IN ('acme', 'bolt', 'flap')"
    ):
        stored[(provider, probe)].append(parse_ts(started))
    duplicates = db.rows(
        "SELECT count(*) FROM (SELECT round_id, provider_id, probe_hash, sample_index FROM samples"
        " GROUP BY round_id, provider_id, probe_hash, sample_index HAVING count(*) > 1) d"
    )[0][0]
    for times in stored.values():
        times.sort()
    answered = [e for e in proxy_log if e["daemon"] in daemons and e["answered"]]
    lost = []
    for e in sorted(answered, key=lambda e: e["t"]):
        key = (e["provider"], prompts.get(e["prompt"], "?"))
        t = parse_ts(e["t"])
        candidates = [s for s in stored[key] if abs((s - t).total_seconds()) <= 5]
        if candidates:
            stored[key].remove(min(candidates, key=lambda s: abs((s - t).total_seconds())))
        else:
            lost.append(e)
    return {
        "answered": len(answered),
        "lost": len(lost),
        "_lost": lost,
        "duplicate_samples": duplicates,
    }


def check_rounds(db: Db) -> dict[str, Any]:
    by_status = dict(db.rows("SELECT status, count(*) FROM rounds GROUP BY status"))
    reasons = dict(
        db.rows(
            "SELECT coalesce(stop_reason, '-'), count(*) FROM rounds"
            " WHERE status = 'interrupted' GROUP BY 1"
        )
    )
    return {
        "by_status": by_status,
        "interrupted_reasons": reasons,
        "left_running": by_status.get("running", 0),
    }


def check_webhooks(db: Db, hooks: list[dict[str, Any]], windows: list[Window]) -> dict[str, Any]:
    """Every outbox message of a live sink received (verified, answered 2xx) at least once;
    duplicates by webhook-id; each incident event has a message per sink."""
    messages = db.rows(
        "SELECT id, sink, event_type, incident_id, state, created_at FROM webhook_outbox"
    )
    got: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for h in hooks:
        if h["verified"] and 200 <= h["status"] < 300:
            got[h["msg_id"]].append(h)
    unverified = sum(1 for h in hooks if not h["verified"])
    lost, disabled, delays, duplicates = [], [], [], 0
    for msg_id, sink, event_type, incident_id, state, created in messages:
        received = got.get(msg_id, [])
        duplicates += max(0, len(received) - 1)
        if received:
            first = min(parse_ts(r["t"]) for r in received)
            delays.append(
                {
                    "msg_id": msg_id,
                    "created": parse_ts(created),
                    "delay_s": (first - parse_ts(created)).total_seconds(),
                }
            )
            continue
        if state == "disabled":  # the receiver answered 410: the sink is no longer live
            disabled.append(msg_id)
            continue
        lost.append(
            {
                "created": parse_ts(created),
                "msg_id": msg_id,
                "sink": sink,
                "type": event_type,
                "incident": incident_id,
                "state": state,
            }
        )
    incidents = db.rows("SELECT id, state, muted_until FROM incidents")
    by_incident: dict[tuple[Any, str], set[str]] = defaultdict(set)
    for _, sink, event_type, incident_id, *_ in messages:
        by_incident[(incident_id, event_type)].add(sink)
    missing_events = []
    for incident_id, state, _ in incidents:
        wanted = [("incident.opened", incident_id)] + (
            [("incident.resolved", incident_id)] if state == "resolved" else []
        )
        for event_type, iid in wanted:
            sinks = by_incident.get((iid, event_type), set())
            if "ops" not in sinks:
                missing_events.append({"incident": iid, "type": event_type, "sinks": sorted(sinks)})
    return {
        "messages": len(messages),
        "by_state": dict(Counter(m[4] for m in messages)),
        "received_requests": len(hooks),
        "unverified_requests": unverified,
        "lost": len(lost),
        "lost_examples": lost[:10],
        "disabled_after_410": len(disabled),
        "duplicates": duplicates,
        "incidents": len(incidents),
        "incident_events_without_message": missing_events,
        "_delays": delays,
        "_lost": lost,
    }


def round_starts(db: Db) -> list[tuple[datetime, datetime | None, str, int]]:
    rows = db.rows("SELECT started_at, finished_at, status, pid FROM rounds ORDER BY started_at")
    return [(parse_ts(s), parse_ts(f) if f else None, st, pid) for s, f, st, pid in rows]


SKIP_EVENTS = ("daemon.round_failed", "daemon.skipped_overlap", "daemon.lead_failed")


def logged_skips(daemons: Daemons, instances: set[str]) -> list[datetime]:
    """When a daemon said it did not run a round: a run skipped (the last one still going),
    a failed round, a failed attempt to lead."""
    out = []
    for inc in daemons.all:
        if inc.instance not in instances:
            continue
        for e in inc.events():
            text = str(e.get("event", ""))
            if text in SKIP_EVENTS or "skipped: maximum number of running instances" in text:
                out.append(parse_ts(e["timestamp"]))
    return sorted(out)


def check_schedule(
    db: Db, windows: list[Window], relevant: set[str], skips: list[datetime]
) -> dict[str, Any]:
    """Gaps between round starts longer than the interval plus its grace (10 s + 10 s, and
    5 s for a loaded machine). A gap is explained by a fault of this database (its window,
    plus two intervals and the lock retry to come back) or by the daemon saying, in its
    log, that it skipped a run meanwhile; otherwise it is a silent skip."""
    starts = [r[0] for r in round_starts(db)]
    limit = EVERY_S * 2 + 5
    unexplained, gaps = [], []
    for a, b in itertools.pairwise(starts):
        gap = (b - a).total_seconds()
        if gap <= limit:
            continue
        slack = EVERY_S * 2 + LOCK_RETRY_S
        why = [w.fault for w in windows if w.fault in relevant and overlaps(w, a, b, slack)]
        said = sum(1 for t in skips if a <= t <= b)
        gaps.append({"from": iso(a), "gap_s": round(gap, 1), "faults": why, "logged_skips": said})
        if not why and not said:
            unexplained.append(gaps[-1])
    return {"rounds": len(starts), "gaps_over_grace": gaps, "unexplained": unexplained}


def first_after(times: list[datetime], t: datetime) -> datetime | None:
    return next((x for x in sorted(times) if x >= t), None)


def leader_events(daemons: Daemons) -> list[tuple[datetime, str, int]]:
    out = []
    for inc in daemons.all:
        if not inc.instance.startswith("pg"):
            continue
        for e in inc.events():
            if e.get("event") == "daemon.leader":
                out.append((parse_ts(e["timestamp"]), inc.instance, inc.pid))
    return sorted(out)


def growth(values: list[float]) -> dict[str, float]:
    """The mean of the last fifth against the mean of the second (the first is warm-up), the
    highest value, and each window's floor: a round holds a dozen descriptors (the writer's
    pipes, connections) for its few seconds, so what a leak raises is the count between
    rounds, the lowest sampled in a window."""
    fifth = max(1, len(values) // 5)
    early = values[fifth : 2 * fifth] or values[:1]
    late = values[-fifth:]
    a, b = sum(early) / len(early), sum(late) / len(late)
    return {
        "early_mean": round(a, 1),
        "late_mean": round(b, 1),
        "early_median": statistics.median(early),
        "late_median": statistics.median(late),
        "early_floor": min(early),
        "late_floor": min(late),
        "max": max(values),
        "growth_ratio": round(b / a, 3) if a else 0.0,
    }


def check_resources(samples: list[dict[str, Any]], daemons: Daemons) -> dict[str, Any]:
    by_pid: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for s in samples:
        if s["rss_kib"]:
            by_pid[s["pid"]].append(s)
    out = {}
    for inc in daemons.all:
        series = by_pid.get(inc.pid, [])
        if len(series) < 10:
            continue
        out[f"{inc.instance} pid {inc.pid}"] = {
            "minutes": round(
                (parse_ts(series[-1]["t"]) - parse_ts(series[0]["t"])).total_seconds() / 60, 1
            ),
            "rss_kib": growth([s["rss_kib"] for s in series]),
            "open_fds": growth([s["fds"] for s in series]),
        }
    return out


def check_readyz(ready: list[dict[str, Any]], windows: list[Window]) -> dict[str, Any]:
    """While PostgreSQL is down (after the probe's 5-s timeout and one poll), every PostgreSQL
    daemon answers 503; after it is back, some daemon (the leader) answers 200: how soon."""
    out = []
    for w in (w for w in windows if w.fault == "postgres_stopped"):
        end = w.end or utc()
        inside = [
            r
            for r in ready
            if r["instance"].startswith("pg")
            and w.start + timedelta(seconds=8) <= parse_ts(r["t"]) <= end
        ]
        ready_inside = [r for r in inside if r["status"] == 200]
        after = [
            parse_ts(r["t"])
            for r in ready
            if r["instance"].startswith("pg") and r["status"] == 200 and parse_ts(r["t"]) >= end
        ]
        back = min(after) if after else None
        out.append(
            {
                "window_start": iso(w.start),
                "probes_while_down": len(inside),
                "ready_while_down": len(ready_inside),
                "ready_again_after_s": round((back - end).total_seconds(), 1) if back else None,
            }
        )
    return {"postgres_outages": out}


# --- the run -----------------------------------------------------------------------------------


def drain(dbs: list[Db], timeout_s: float) -> None:
    """Wait until no webhook message is pending (every sink is up again by now)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pending = 0
        for db in dbs:
            with contextlib.suppress(Exception):
                pending += db.rows("SELECT count(*) FROM webhook_outbox WHERE state = 'pending'")[
                    0
                ][0]
        if pending == 0:
            return
        time.sleep(2)


def in_window(ws: list[Window], t: datetime, slack_s: float = 0.0) -> bool:
    return any(overlaps(w, t, t, slack_s) for w in ws)


def seconds(a: datetime | None, b: datetime | None) -> float | None:
    return round((b - a).total_seconds(), 1) if a and b else None


class Table:
    """Builds the result table: each fault, its count, what was lost, what was delayed."""

    def __init__(
        self,
        answers: dict[str, dict[str, Any]],
        proxy_log: list[dict[str, Any]],
        hooks: dict[str, dict[str, Any]],
        dbs: dict[str, Db],
        daemons: Daemons,
        readiness: dict[str, Any],
    ) -> None:
        self.answers, self.proxy_log, self.readiness = answers, proxy_log, readiness
        self.delays = [d for h in hooks.values() for d in h["_delays"]]
        self.lost_alerts = [m for h in hooks.values() for m in h["_lost"]]
        self.rounds = {
            name: [r for r in round_starts(db) if r[2] == "complete"] for name, db in dbs.items()
        }
        self.leaders = leader_events(daemons)

    def next_complete(self, db: str, t: datetime) -> float | None:
        """Seconds from `t` to the end of the first complete round started after it."""
        ends = [r[1] for r in self.rounds[db] if r[1] and r[0] >= t]
        return seconds(t, min(ends)) if ends else None

    def lost(self, ws: list[Window]) -> dict[str, int]:
        answers = sum(
            1
            for a in self.answers.values()
            for e in a["_lost"]
            if in_window(ws, parse_ts(e["t"]), 10)
        )
        alerts = sum(1 for m in self.lost_alerts if in_window(ws, m["created"], 10))
        return {"answers": answers, "alerts": alerts}

    def alert_delays(self, ws: list[Window]) -> dict[str, Any]:
        """Alerts queued during the windows: how many, and the longest wait until the
        receiver first took one."""
        inside = [d["delay_s"] for d in self.delays if in_window(ws, d["created"])]
        return {
            "alerts_queued": len(inside),
            "alerts_max_delay_s": round(max(inside, default=0), 1),
        }

    def row(self, fault: str, ws: list[Window]) -> dict[str, Any]:
        row: dict[str, Any] = {"fault": fault, "count": len(ws), "lost": self.lost(ws)}
        row["delayed"] = self.delayed(fault, ws)
        if fault.startswith("provider_"):
            served = [
                e
                for e in self.proxy_log
                if e["provider"] == "bolt" and in_window(ws, parse_ts(e["t"]))
            ]
            row["requests_faulted"] = sum(1 for e in served if e["mode"] != "pass")
            row["answered_in_window"] = sum(1 for e in served if e["answered"])
        return row

    def delayed(self, fault: str, ws: list[Window]) -> dict[str, Any]:
        if fault == "postgres_stopped":
            return {
                "seconds_stopped": [w.detail.get("seconds") for w in ws],
                "next_complete_round_after_restart_s": [
                    self.next_complete("postgresql", w.end or utc()) for w in ws
                ],
                "ready_again_after_restart_s": [
                    o["ready_again_after_s"] for o in self.readiness["postgres_outages"]
                ],
                **self.alert_delays(ws),
            }
        if fault.startswith("receiver_"):
            return self.alert_delays(ws)
        if fault.startswith("leader_"):
            return {
                "standby_leads_after_s": [self.takeover(w) for w in ws],
                "next_complete_round_after_s": [
                    self.next_complete("postgresql", w.start) for w in ws
                ],
                "signalled_exit_after_s": [w.detail.get("exit_s") for w in ws],
                "exit_code": [w.detail.get("exit_code") for w in ws],
            }
        if fault == "disk_full":
            return {
                "seconds_full": [seconds(w.start, w.end) for w in ws],
                "next_complete_round_after_free_s": [
                    self.next_complete("sqlite", w.end or utc()) for w in ws
                ],
            }
        return {"rounds_went_on": True}

    def takeover(self, w: Window) -> float | None:
        """Seconds from the signal to the other daemon's `daemon.leader`."""
        pid = w.detail.get("pid")
        nxt = next((t for t, _, p in self.leaders if t >= w.start and p != pid), None)
        return seconds(w.start, nxt)


def summarize(windows: list[Window], table: Table) -> list[dict[str, Any]]:
    by_fault: dict[str, list[Window]] = defaultdict(list)
    for w in windows:
        by_fault[w.fault].append(w)
    return [table.row(fault, ws) for fault, ws in by_fault.items()]


def markdown(result: dict[str, Any]) -> str:
    """The README's table from a chaos.json."""
    lines = ["| fault | count | lost | delayed |", "|---|---|---|---|"]
    for row in result["faults"]:
        lost = row["lost"]
        lost_text = (
            "nothing"
            if not any(lost.values())
            else f"{lost['answers']} answers, {lost['alerts']} alerts"
        )
        delayed = "; ".join(f"{k}: {v}" for k, v in row["delayed"].items())
        if "requests_faulted" in row:
            delayed = f"{row['requests_faulted']} requests faulted, stored as errors; " + delayed
        lines.append(f"| {row['fault']} | {row['count']} | {lost_text} | {delayed} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60, help="the least the run lasts")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--quick", action="store_true", help="every fault duration divided by 5")
    parser.add_argument(
        "--sample-s",
        type=float,
        default=7,
        help="resource sampling period; not a divisor of the 10-s schedule, so that the "
        "samples fall in every phase of a round",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "chaos.json")
    parser.add_argument("--table", type=Path, help="print the README table of a chaos.json")
    args = parser.parse_args()
    if args.table:
        print(markdown(json.loads(args.table.read_text())))
        return
    if os.geteuid() != 0:
        raise SystemExit("chaos.py needs root: it mounts a tmpfs and runs PostgreSQL as postgres")
    rng = random.Random(args.seed)
    scale = 0.2 if args.quick else 1.0
    work = Path(tempfile.mkdtemp(prefix="auditor-chaos-"))
    os.chmod(work, 0o755)
    print(f"work directory {work}", flush=True)
    (work / "probes").mkdir()
    (work / "probes" / "tiny.yaml").write_text(yaml.safe_dump(SUITE))
    proxy_log, hook_log = JsonLog(work / "proxy.jsonl"), JsonLog(work / "hooks.jsonl")
    resources, ready = JsonLog(work / "resources.jsonl"), JsonLog(work / "readyz.jsonl")
    pg = PrivatePostgres(work)
    disk = SmallDisk(work / "disk", 256)
    sinks = {name: Sink(name, hook_log) for name in SINKS}
    spec = FleetSpec(
        members=[
            FleetMember(name="ref", port=0),
            FleetMember(name="acme", port=0),
            FleetMember(name="bolt", port=0),
            FleetMember(name="broken", port=0, fault="http_500"),
        ]
    )
    daemons = Daemons(work)
    started = utc()
    injector: Injector | None = None
    exited_early: list[dict[str, Any]] = []
    try:
        with running_fleet(spec) as fleet:
            proxies = {
                n: ProviderProxy(n, fleet.base_url(m), proxy_log)
                for n, m in (("acme", "acme"), ("bolt", "bolt"), ("flap", "acme"))
            }
            databases = {
                "pg-a": pg.url,
                "pg-b": pg.url,
                "sqlite-c": f"sqlite:///{disk.path / 'auditor.db'}",
            }
            for instance, url in databases.items():
                config = config_for(instance, url, fleet, proxies, sinks)
                (work / f"providers-{instance}.yaml").write_text(
                    yaml.safe_dump(config, sort_keys=False)
                )
            for instance in databases:
                daemons.start(instance)
                time.sleep(3)
            watcher = Watcher(daemons, args.sample_s, resources, ready)
            injector = Injector(scale, rng, pg, disk, proxies, sinks, daemons)
            faults = threading.Thread(target=injector.run, daemon=True)
            faults.start()
            flapping = threading.Event()
            threading.Thread(target=injector.flap, args=(flapping,), daemon=True).start()
            deadline = time.monotonic() + args.minutes * 60
            while faults.is_alive() or time.monotonic() < deadline:
                time.sleep(1)
                for inc in daemons.reap():
                    if not any(w.detail.get("pid") == inc.pid for w in injector.windows):
                        exited_early.append(
                            {
                                "instance": inc.instance,
                                "pid": inc.pid,
                                "exit_code": inc.exit_code,
                                "at": iso(inc.ended),
                            }
                        )
                        print(
                            f"daemon {inc.instance} exited on its own ({inc.exit_code})",
                            flush=True,
                        )
                        daemons.start(inc.instance)
            flapping.set()
            proxies["flap"].mode = "pass"
            time.sleep(EVERY_S * 2)  # a round resolves the flapping provider's incident
            dbs = {
                "postgresql": Db("postgresql", pg.dsn("chaos")),
                "sqlite": Db("sqlite", f"sqlite:///{disk.path / 'auditor.db'}"),
            }
            drain(list(dbs.values()), 180)
            watcher.stop()
            daemons.stop_all()
            ended = utc()
            result = analyse(
                args,
                started,
                ended,
                injector.flips,
                injector.windows,
                proxy_log,
                hook_log,
                resources,
                ready,
                dbs,
                daemons,
                exited_early,
                work,
            )
    finally:
        daemons.stop_all()
        for s in sinks.values():
            s.down()
        with contextlib.suppress(Exception):
            pg.stop()
        disk.unmount()
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps(result["faults"], indent=2, default=str))
    print(json.dumps(result["checks"], indent=2, default=str))
    print(f"wrote {args.out}")


def analyse(
    args: argparse.Namespace,
    started: datetime,
    ended: datetime,
    flips: int,
    windows: list[Window],
    proxy_log: JsonLog,
    hook_log: JsonLog,
    resources: JsonLog,
    ready: JsonLog,
    dbs: dict[str, Db],
    daemons: Daemons,
    exited_early: list[dict[str, Any]],
    work: Path,
) -> dict[str, Any]:
    answers = {
        "postgresql": check_answers(dbs["postgresql"], {"pg-a", "pg-b"}, proxy_log.events),
        "sqlite": check_answers(dbs["sqlite"], {"sqlite-c"}, proxy_log.events),
    }
    rounds = {name: check_rounds(db) for name, db in dbs.items()}
    hooks = {name: check_webhooks(db, hook_log.events, windows) for name, db in dbs.items()}
    pg_faults = {"postgres_stopped", "leader_SIGKILL", "leader_SIGTERM"}
    schedule = {
        "postgresql": check_schedule(
            dbs["postgresql"], windows, pg_faults, logged_skips(daemons, {"pg-a", "pg-b"})
        ),
        "sqlite": check_schedule(
            dbs["sqlite"], windows, {"disk_full"}, logged_skips(daemons, {"sqlite-c"})
        ),
    }
    readiness = check_readyz(ready.events, windows)
    table = summarize(windows, Table(answers, proxy_log.events, hooks, dbs, daemons, readiness))
    takeovers: list[list[float | None]] = [
        r["delayed"]["standby_leads_after_s"] for r in table if r["fault"].startswith("leader_")
    ]
    resource_figures = check_resources(resources.events, daemons)
    leaders = leader_events(daemons)
    checks = {
        "answered_stored_once": {
            k: {
                "answered": v["answered"],
                "lost": v["lost"],
                "lost_examples": v["_lost"][:10],
                "duplicate_samples": v["duplicate_samples"],
            }
            for k, v in answers.items()
        },
        "rounds": rounds,
        "webhooks": {
            k: {kk: vv for kk, vv in v.items() if not kk.startswith("_")} for k, v in hooks.items()
        },
        "schedule": schedule,
        "takeover_within_s": takeovers,
        "lock_retry_s": LOCK_RETRY_S,
        "readyz": readiness,
        "exited_on_their_own": exited_early,
        "resources": resource_figures,
    }
    verdicts = {
        "nothing_answered_lost": all(
            v["lost"] == 0 and v["duplicate_samples"] == 0 for v in answers.values()
        ),
        "no_round_left_running": all(r["left_running"] == 0 for r in rounds.values()),
        "every_alert_delivered": all(
            h["lost"] == 0
            and not h["incident_events_without_message"]
            and h["unverified_requests"] == 0
            for h in hooks.values()
        ),
        "no_unexplained_schedule_gap": all(not s["unexplained"] for s in schedule.values()),
        "standby_within_lock_retry": all(
            t is not None and t <= LOCK_RETRY_S + SHUTDOWN_DEADLINE_S + 3
            for ts in takeovers
            for t in ts
        ),
        "never_stopped_on_its_own": not exited_early,
        "readyz_follows_database": all(
            o["ready_while_down"] == 0 and o["ready_again_after_s"] is not None
            for o in readiness["postgres_outages"]
        ),
        # Judged on the SQLite daemon: it leads all along (a PostgreSQL daemon's figures
        # change with its role: a leader holds database connections and round pipes).
        "rss_and_fds_flat": all(
            f["rss_kib"]["growth_ratio"] <= 1.2
            and f["open_fds"]["late_floor"] <= f["open_fds"]["early_floor"] + 3
            for name, f in resource_figures.items()
            if name.startswith("sqlite-c")
        ),
    }
    return {
        "benchmark": "chaos",
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "seed": args.seed,
        "quick": args.quick,
        "minutes": round((ended - started).total_seconds() / 60, 1),
        "started": iso(started),
        "ended": iso(ended),
        "schedule_every_s": EVERY_S,
        "lock_retry_s": LOCK_RETRY_S,
        "daemon_incarnations": [
            {
                "instance": i.instance,
                "pid": i.pid,
                "started": iso(i.started),
                "ended": iso(i.ended),
                "exit_code": i.exit_code,
            }
            for i in daemons.all
        ],
        "leader_events": [{"t": iso(t), "instance": inst, "pid": pid} for t, inst, pid in leaders],
        "windows": [w.to_json() for w in windows],
        "flap_flips": flips,
        "faults": table,
        "verdicts": verdicts,
        "checks": checks,
        "work_dir": str(work),
    }


if __name__ == "__main__":
    main()
