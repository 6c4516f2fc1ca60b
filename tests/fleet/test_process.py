"""Running fleets: in-process on a thread, and as a detached subprocess with a state file."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from auditor_fleet import FleetMember, FleetSpec
from auditor_fleet.process import (
    FleetError,
    PortInUseError,
    fleet_down,
    fleet_status,
    fleet_up,
    free_port,
    running_fleet,
)

HELLO = [{"role": "user", "content": "hello"}]


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def complete(base_url: str) -> str:
    client = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=5)
    return client.chat.completions.create(model="m", messages=HELLO).choices[0].message.content


def test_running_fleet_assigns_ports_and_frees_them() -> None:
    fixed = free_port()
    spec = FleetSpec(members=[FleetMember(name="a", port=0), FleetMember(name="b", port=fixed)])
    with running_fleet(spec) as handle:
        port_a = handle.member("a").port
        assert port_a not in (0, fixed)
        assert handle.base_url("b") == f"http://127.0.0.1:{fixed}/v1"
        assert complete(handle.base_url("a")) and complete(handle.base_url("b"))
        assert not port_is_free(port_a)
    assert port_is_free(port_a) and port_is_free(fixed)


def test_running_fleet_stops_despite_a_hanging_request() -> None:
    spec = FleetSpec(members=[FleetMember(name="hang", port=0, fault="hang")])
    done = threading.Event()
    statuses: list[int] = []
    with running_fleet(spec) as handle:

        def call() -> None:
            url = handle.base_url("hang") + "/chat/completions"
            statuses.append(httpx.post(url, json={"messages": HELLO}).status_code)
            done.set()

        threading.Thread(target=call, daemon=True).start()
        time.sleep(0.2)
        start = time.monotonic()
    assert time.monotonic() - start < 1
    assert done.wait(3)
    assert statuses == [503]


def test_running_fleet_refuses_a_busy_port(busy_port: int) -> None:
    spec = FleetSpec(
        members=[FleetMember(name="ok", port=0), FleetMember(name="clash", port=busy_port)]
    )
    with pytest.raises(PortInUseError, match=f"port {busy_port} .*'clash'"), running_fleet(spec):
        pass


def test_fleet_up_status_down(tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    spec = FleetSpec(
        members=[
            FleetMember(name="acme", port=ports[0]),
            FleetMember(name="broken", port=ports[1], fault="http_500"),
        ]
    )
    handle = fleet_up(spec, tmp_path)
    try:
        state = json.loads((tmp_path / "fleet.json").read_text())
        assert state["pid"] == handle.pid
        assert [(m["name"], m["port"], m["fault"], m["base_url"]) for m in state["members"]] == [
            ("acme", ports[0], "honest", f"http://127.0.0.1:{ports[0]}/v1"),
            ("broken", ports[1], "http_500", f"http://127.0.0.1:{ports[1]}/v1"),
        ]
        assert complete(handle.base_url("acme"))
        with pytest.raises(openai.InternalServerError):
            complete(handle.base_url("broken"))
        status = fleet_status(tmp_path)
        assert status is not None and status.running and status.pid == handle.pid
        assert all(m.healthy for m in status.members)
        with pytest.raises(FleetError, match="already running"):
            fleet_up(spec, tmp_path)
    finally:
        start = time.monotonic()
        assert fleet_down(tmp_path) is True
    assert time.monotonic() - start < 5  # SIGTERM sufficed
    assert not (tmp_path / "fleet.json").exists()
    assert all(port_is_free(p) for p in ports)
    assert fleet_status(tmp_path) is None
    assert fleet_down(tmp_path) is False
    assert "ready at" in (tmp_path / "fleet.log").read_text()


def test_fleet_up_refuses_a_busy_port(tmp_path: Path, busy_port: int) -> None:
    spec = FleetSpec(members=[FleetMember(name="clash", port=busy_port)])
    with pytest.raises(PortInUseError, match=f"port {busy_port}"):
        fleet_up(spec, tmp_path)
    assert not (tmp_path / "fleet.json").exists()


def test_fleet_up_reports_a_dying_process(tmp_path: Path) -> None:
    spec = FleetSpec(members=[FleetMember(name="x", port=free_port(), backend="no-such-backend")])
    with pytest.raises(FleetError, match=r"exited with code 2(.|\n)*unknown fleet backend"):
        fleet_up(spec, tmp_path, wait_s=20)
    assert not (tmp_path / "fleet.json").exists()


def module_entry(spec: FleetSpec) -> subprocess.Popen[bytes]:
    """The fleet as `python -m auditor_fleet.process --spec-json ...` runs it."""
    return subprocess.Popen(
        [sys.executable, "-m", "auditor_fleet.process", "--spec-json", spec.model_dump_json()],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_module_entry_stops_on_sigterm() -> None:
    port = free_port()
    spec = FleetSpec(members=[FleetMember(name="solo", port=port)])
    proc = module_entry(spec)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert f"solo (honest) ready at http://127.0.0.1:{port}/v1" in line
        assert complete(f"http://127.0.0.1:{port}/v1")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
        assert proc.stderr is not None
        assert proc.stderr.read() == b""  # no traceback, no runpy warning
    finally:
        proc.kill()
        proc.wait()
    assert port_is_free(port)


def test_module_entry_rejects_a_bad_spec() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "auditor_fleet.process", "--spec-json", '{"members": []}'],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: <argv>: members:")
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.model
def test_module_entry_says_what_its_models_reused_when_it_stops() -> None:
    ports = [free_port(), free_port()]
    spec = FleetSpec(
        members=[FleetMember(name=f"m{i}", port=p, backend="llama") for i, p in enumerate(ports)]
    )
    proc = module_entry(spec)
    try:
        assert proc.stdout is not None
        assert "ready at" in proc.stdout.readline().decode()
        assert "ready at" in proc.stdout.readline().decode()
        for port in ports:  # one prompt to both members: the second reuses the first's
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x")
            client.chat.completions.create(model="m", messages=HELLO, max_tokens=4)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        summary = proc.stdout.read().decode()
    finally:
        proc.kill()
        proc.wait()
    assert "fleet model " in summary, summary
    assert ": 2 prompts, 1 reused whole, " in summary
