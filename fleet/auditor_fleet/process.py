"""Running a fleet: all members in one process, one asyncio loop, one uvicorn server each.

Three ways in:

- `running_fleet(spec)`: in-process, on a background thread with its own loop (tests).
- `serve_fleet(spec)`: blocking, in the foreground; SIGTERM/SIGINT stop it gracefully.
  `python -m auditor_fleet.process --spec FILE` (or `--spec-json JSON`) calls it.
- `fleet_up(spec, state_dir)` / `fleet_down(state_dir)` / `fleet_status(state_dir)`: the
  same module entry as a detached subprocess, tracked by `state_dir/fleet.json`.

Sockets are bound before any server starts, so a busy port fails fast and by name, and
port 0 (in-process only) gets a free port that the returned handle reports.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG
from uvicorn.protocols.http.h11_impl import H11Protocol

from auditor.errors import AuditorError
from auditor.web.server import EmbeddedServer
from auditor_fleet.backends import Backend, backends
from auditor_fleet.llama_model import reuse_summary
from auditor_fleet.server import TRANSPORT_EXTENSION, begin_shutdown, build_app
from auditor_fleet.spec import FleetSpec, base_url, load_fleet_spec, parse_fleet_spec

STATE_FILE = "fleet.json"
LOG_FILE = "fleet.log"
SPEC_FILE = "fleet-spec.json"
# Seconds a stopping server waits for in-flight requests (say, a slow model generation)
# before cancelling them. Planted hangs and drips end as soon as the fleet stops.
GRACEFUL_SHUTDOWN_S = 5

_children: dict[int, subprocess.Popen[bytes]] = {}


class FleetError(AuditorError):
    """A fleet that cannot be started, found or stopped."""


class PortInUseError(FleetError):
    def __init__(self, host: str, port: int, member: str) -> None:
        self.port = port
        super().__init__(f"port {port} on {host} (fleet member {member!r}) is already in use")


@dataclass(frozen=True)
class RunningMember:
    name: str
    port: int
    fault: str
    base_url: str


@dataclass
class FleetHandle:
    """Where a started fleet listens; `pid` and `state_dir` are set for a subprocess fleet."""

    host: str
    members: list[RunningMember]
    pid: int | None = None
    state_dir: Path | None = None
    started_at: float = field(default_factory=time.time)

    def member(self, name: str) -> RunningMember:
        for m in self.members:
            if m.name == name:
                return m
        raise KeyError(f"no fleet member named {name!r}")

    def base_url(self, name: str) -> str:
        return self.member(name).base_url

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "host": self.host,
            "started_at": self.started_at,
            "log": str(self.state_dir / LOG_FILE) if self.state_dir else None,
            "members": [asdict(m) for m in self.members],
        }


@dataclass(frozen=True)
class MemberStatus:
    name: str
    port: int
    fault: str
    base_url: str
    healthy: bool


@dataclass(frozen=True)
class FleetStatus:
    pid: int
    running: bool
    members: list[MemberStatus]


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (prefer port 0 in specs where a race matters)."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _bind(host: str, port: int, member: str) -> socket.socket:
    # proto must say TCP: asyncio sets TCP_NODELAY only on sockets that do, and without it
    # every response waits ~40 ms for the client's delayed ACK (Nagle).
    sock = socket.socket(_family(host), socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise PortInUseError(host, port, member) from None
    sock.listen(128)
    return sock


class FleetHTTPProtocol(H11Protocol):
    """uvicorn's h11 protocol, plus the connection's transport in the ASGI scope.

    The `reset` fault needs the transport to abort the connection; see `auditor_fleet.server`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        inner = self.app

        async def app(scope: Any, receive: Any, send: Any) -> None:
            scope.setdefault("extensions", {})[TRANSPORT_EXTENSION] = self.transport
            await inner(scope, receive, send)

        self.app = app


class _Fleet:
    """The servers of one fleet, bound to their sockets, ready to be served on one loop."""

    def __init__(self, spec: FleetSpec, *, log_config: dict[str, Any] | None) -> None:
        self.spec = spec
        # One instance per backend name, shared by the members using it (one model in memory).
        self.backends: dict[str, Backend] = {}
        for name in sorted({m.backend for m in spec.members}):
            try:
                self.backends[name] = backends.get(name).for_fleet(spec)
            except KeyError as exc:
                raise FleetError(exc.args[0]) from None
        self.sockets: list[socket.socket] = []
        try:
            for member in spec.members:
                self.sockets.append(_bind(spec.host, member.port, member.name))
        except BaseException:
            self.close()
            raise
        self.apps = [
            build_app(member, self.backends[member.backend], seed=spec.seed)
            for member in spec.members
        ]
        self.servers = [
            EmbeddedServer(
                uvicorn.Config(
                    app,
                    host=spec.host,
                    port=sock.getsockname()[1],
                    log_level="warning",
                    log_config=log_config,
                    lifespan="off",
                    http=FleetHTTPProtocol,
                    server_header=False,
                    proxy_headers=False,
                    timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
                )
            )
            for app, sock in zip(self.apps, self.sockets, strict=True)
        ]

    def handle(self, pid: int | None = None, state_dir: Path | None = None) -> FleetHandle:
        members = []
        for member, sock in zip(self.spec.members, self.sockets, strict=True):
            port = sock.getsockname()[1]
            members.append(
                RunningMember(member.name, port, member.fault, base_url(self.spec.host, port))
            )
        return FleetHandle(self.spec.host, members, pid, state_dir)

    @property
    def started(self) -> bool:
        return all(s.started for s in self.servers)

    async def serve(self, on_ready: Callable[[], None] | None = None) -> None:
        tasks = [
            asyncio.create_task(server.serve(sockets=[sock]))
            for server, sock in zip(self.servers, self.sockets, strict=True)
        ]
        watcher = asyncio.create_task(self._notify(on_ready)) if on_ready else None
        try:
            await asyncio.gather(*tasks)
        finally:
            self.stop()
            await asyncio.gather(*tasks, return_exceptions=True)
            if watcher is not None:
                watcher.cancel()
            self.close()

    async def _notify(self, on_ready: Callable[[], None]) -> None:
        while not self.started:
            await asyncio.sleep(0.005)
        on_ready()

    def stop(self) -> None:
        """Ask every server to shut down; a second call stops waiting for open requests."""
        for app in self.apps:
            begin_shutdown(app)
        for server in self.servers:
            if server.should_exit:
                server.force_exit = True
            server.should_exit = True

    def close(self) -> None:
        for backend in self.backends.values():
            backend.close()
        for sock in self.sockets:
            sock.close()


@contextlib.contextmanager
def running_fleet(spec: FleetSpec, *, timeout_s: float = 10.0) -> Iterator[FleetHandle]:
    """Serve a fleet on a background thread for the duration of the `with` block.

    Returns once every member accepts requests. Members with port 0 get free ports; read
    them from the handle.
    """
    fleet = _Fleet(spec, log_config=None)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(fleet.serve(on_ready=ready.set))
        except BaseException as exc:
            failure.append(exc)
        finally:
            ready.set()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    thread = threading.Thread(target=run, name="auditor-fleet", daemon=True)
    thread.start()
    try:
        if not ready.wait(timeout_s) or failure or not fleet.started:
            cause = failure[0] if failure else None
            raise FleetError(f"fleet did not start within {timeout_s:g} s: {cause!r}") from cause
        yield fleet.handle()
    finally:
        if not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(fleet.stop)
        thread.join(timeout=GRACEFUL_SHUTDOWN_S + 10)


def serve_fleet(spec: FleetSpec, *, on_ready: Callable[[FleetHandle], None] | None = None) -> None:
    """Serve a fleet in the foreground until SIGTERM or SIGINT (twice: don't wait)."""
    fleet = _Fleet(spec, log_config=LOGGING_CONFIG)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, fleet.stop)
        await fleet.serve(
            on_ready=(lambda: on_ready(fleet.handle(os.getpid()))) if on_ready else None
        )

    asyncio.run(main())
    for line in reuse_summary():  # what the fleet's prompt caches saved (docs/fleet.md)
        print(f"fleet {line}", flush=True)


def _print_ready(handle: FleetHandle) -> None:
    for m in handle.members:
        print(f"fleet member {m.name} ({m.fault}) ready at {m.base_url}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m auditor_fleet.process")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--spec", type=Path, help="fleet spec file (YAML or JSON)")
    source.add_argument("--spec-json", help="fleet spec as inline JSON")
    args = parser.parse_args(argv)
    try:
        spec = load_fleet_spec(args.spec) if args.spec else parse_fleet_spec(args.spec_json)
        serve_fleet(spec, on_ready=_print_ready)
    except AuditorError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr, flush=True)
        return exc.exit_code
    return 0


# --- the detached subprocess fleet -------------------------------------------------------


def fleet_up(spec: FleetSpec, state_dir: Path, wait_s: float = 30.0) -> FleetHandle:
    """Start the fleet as a detached subprocess and wait until every member is healthy."""
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    previous = _read_state(state_dir)
    if previous is not None and _alive(previous["pid"]):
        raise FleetError(
            f"a fleet is already running (pid {previous['pid']}, {state_dir / STATE_FILE}); "
            "stop it first"
        )
    for member in spec.members:
        if member.port == 0:
            raise FleetError(f"fleet member {member.name!r} needs a fixed port, not 0")
        _bind(spec.host, member.port, member.name).close()

    spec_path = state_dir / SPEC_FILE
    spec_path.write_text(spec.model_dump_json(indent=2), encoding="utf-8")
    log_path = state_dir / LOG_FILE
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[1])  # the folder holding auditor_fleet
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "auditor_fleet.process", "--spec", str(spec_path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    _children[proc.pid] = proc
    handle = FleetHandle(
        spec.host,
        [RunningMember(m.name, m.port, m.fault, base_url(spec.host, m.port)) for m in spec.members],
        pid=proc.pid,
        state_dir=state_dir,
    )
    _write_state(state_dir, handle.to_json())
    try:
        _wait_healthy(proc, handle, wait_s, log_path)
    except BaseException:
        _stop_pid(proc.pid, timeout_s=5)
        (state_dir / STATE_FILE).unlink(missing_ok=True)
        raise
    return handle


def fleet_down(state_dir: Path, timeout_s: float = 10.0) -> bool:
    """Stop the fleet recorded in `state_dir`; False if none was running.

    A state file left by a fleet that died is removed either way.
    """
    state = _read_state(Path(state_dir))
    if state is None:
        return False
    pid = int(state["pid"])
    stopped = _alive(pid) and _is_fleet_process(pid)
    if stopped:
        _stop_pid(pid, timeout_s)
    (Path(state_dir) / STATE_FILE).unlink(missing_ok=True)
    return stopped


def fleet_status(state_dir: Path) -> FleetStatus | None:
    """The recorded fleet, whether its process lives and which members answer /healthz."""
    state = _read_state(Path(state_dir))
    if state is None:
        return None
    pid = int(state["pid"])
    running = _alive(pid)
    host = state["host"]
    members = [
        MemberStatus(
            m["name"],
            m["port"],
            m["fault"],
            m["base_url"],
            running and _healthy(host, m["port"], m["name"]),
        )
        for m in state["members"]
    ]
    return FleetStatus(pid, running, members)


def _read_state(state_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((state_dir / STATE_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise FleetError(f"{state_dir / STATE_FILE}: unreadable fleet state: {exc}") from None


def _write_state(state_dir: Path, data: dict[str, Any]) -> None:
    tmp = state_dir / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.replace(tmp, state_dir / STATE_FILE)


def _healthy(host: str, port: int, name: str, timeout_s: float = 0.5) -> bool:
    conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        return response.status == 200 and json.loads(response.read()).get("name") == name
    except (OSError, ValueError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _wait_healthy(
    proc: subprocess.Popen[bytes], handle: FleetHandle, wait_s: float, log_path: Path
) -> None:
    deadline = time.monotonic() + wait_s
    pending = {m.name: m.port for m in handle.members}
    while pending:
        code = proc.poll()
        if code is not None:
            raise FleetError(f"fleet process exited with code {code}; log tail:\n{_tail(log_path)}")
        if time.monotonic() > deadline:
            raise FleetError(
                f"fleet members {', '.join(sorted(pending))} not healthy after {wait_s:g} s; "
                f"log tail:\n{_tail(log_path)}"
            )
        pending = {n: p for n, p in pending.items() if not _healthy(handle.host, p, n)}
        if pending:
            time.sleep(0.05)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def _alive(pid: int) -> bool:
    """Whether `pid` runs, reaping it first if it is our exited child (else it would linger)."""
    child = _children.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del _children[pid]
        return False
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_fleet_process(pid: int) -> bool:
    """Guards against a recycled pid: only signal a process running this module."""
    try:
        return b"auditor_fleet.process" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists()
    except OSError:
        return True


def _stop_pid(pid: int, timeout_s: float) -> None:
    """SIGTERM, then SIGKILL to the whole session if it has not exited within `timeout_s`."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if _wait_dead(pid, timeout_s):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    _wait_dead(pid, 5)


def _wait_dead(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


if __name__ == "__main__":
    sys.exit(main())
