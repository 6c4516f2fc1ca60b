"""The real daemon process: a 2-second schedule against local providers and a local webhook
receiver that verifies signatures; SIGTERM ends it cleanly. Plus the catch-up rule."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from auditor_fleet import FleetMember, FleetSpec
from auditor_fleet.process import FleetHandle, running_fleet
from helpers.cli import AUDITOR, endpoint_reference, provider, write_config

from auditor.operations.daemon import missed_run
from auditor.operations.settings import ScheduleEntry
from tests.alerts.receiver import NEW_SECRET, Receiver


@pytest.fixture(scope="module")
def fleet() -> Iterator[FleetHandle]:
    spec = FleetSpec(
        members=[
            FleetMember(name="acme", port=0),
            FleetMember(name="bolt", port=0),
            FleetMember(name="broken", port=0, fault="http_500"),
        ]
    )
    with running_fleet(spec) as handle:
        yield handle


def wait_until(check, timeout: float, step: float = 0.2) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(step)
    return False


@pytest.mark.slow
def test_the_daemon_runs_rounds_alerts_once_and_stops_on_sigterm(
    fleet: FleetHandle, tmp_path: Path, sqlite_url: str
) -> None:
    receiver = Receiver([NEW_SECRET]).start()
    config = write_config(
        tmp_path,
        [
            provider("bolt", fleet.base_url("bolt"), trusted=True),
            provider("broken", fleet.base_url("broken")),
            provider("nokey", fleet.base_url("bolt"), api_key_env="NOKEY_UNSET_KEY"),
        ],
        sqlite_url,
        reference=endpoint_reference(fleet.base_url("acme")),
        extra={
            "schedule": [{"suite": "mini", "every": "2s"}],
            "server": {"host": "127.0.0.1", "port": 0},
            "daemon": {"shutdown_deadline": "5s"},
            "alerts": {
                "sinks": [
                    {
                        "name": "ops",
                        "url": receiver.url,
                        "secret_env": "HOOK_SECRET",
                        "min_severity": "warning",
                    }
                ]
            },
        },
    )
    env = {**os.environ, "HOOK_SECRET": NEW_SECRET, "NO_COLOR": "1"}
    env.pop("NOKEY_UNSET_KEY", None)
    log = (tmp_path / "daemon.log").open("w+")
    proc = subprocess.Popen(
        [AUDITOR, "daemon", "-c", str(config)],
        cwd=tmp_path,
        env=env,
        stderr=log,
        stdout=subprocess.DEVNULL,
    )
    db = tmp_path / "auditor.db"
    try:

        def events() -> list[dict]:  # type: ignore[type-arg]
            lines = (tmp_path / "daemon.log").read_text().splitlines()
            return [json.loads(line) for line in lines if line.startswith("{")]

        def rounds() -> list[tuple[str, str]]:
            if not db.exists():
                return []
            with sqlite3.connect(db) as conn:
                return conn.execute("SELECT id, status FROM rounds").fetchall()

        assert wait_until(lambda: any(e["event"] == "daemon.started" for e in events()), 30)
        port = next(e["port"] for e in events() if e["event"] == "daemon.started")
        assert wait_until(lambda: len([r for r in rounds() if r[1] == "complete"]) >= 3, 60)
        assert wait_until(lambda: len(receiver.processed) >= 2, 20), receiver.requests
        bodies = list(receiver.processed.values())
        assert all(r.verified for r in receiver.requests)
        opened = {b["data"]["incident"]["provider"] for b in bodies}
        assert opened == {"broken", "nokey"}  # errors: unavailable; bolt stays consistent
        assert {b["type"] for b in bodies} == {"incident.opened"}
        # Several rounds, one alert per incident: not one per round.
        assert len(receiver.processed) == 2
        health = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert health.status == 200
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        assert b'auditor_open_incidents{severity="warning"} 2.0' in metrics
        assert b"auditor_requests_total" in metrics
        # The same app serves the dashboard and its API: the incidents it opened are there.
        overview = json.loads(
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/overview", timeout=5).read()
        )
        assert {i["provider"] for i in overview["open_incidents"]} == {"broken", "nokey"}
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
        assert 'data-testid="cell-' in page
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - t0 < 10
        assert not any(r[1] == "running" for r in rounds())
        lines = (tmp_path / "daemon.log").read_text()
        assert NEW_SECRET not in lines and "What is 17 + 25" not in lines  # no secret, no prompt
    finally:
        if proc.poll() is None:
            proc.kill()
        receiver.stop()


def test_a_run_missed_while_down_runs_once_within_its_grace() -> None:
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    hourly = ScheduleEntry(suite="core", every=timedelta(hours=1), grace=timedelta(minutes=30))
    assert missed_run(hourly, None, now)  # never ran: run on the first start
    assert not missed_run(hourly, now - timedelta(minutes=50), now)  # not due yet
    assert missed_run(hourly, now - timedelta(minutes=70), now)  # due 10 min ago
    assert not missed_run(hourly, now - timedelta(hours=2), now)  # due an hour ago: too late
    nightly = ScheduleEntry(suite="deep", cron="0 3 * * *", grace=timedelta(hours=6))
    assert missed_run(nightly, now - timedelta(hours=20), now.replace(hour=5))  # 03:00 missed
    assert not missed_run(nightly, now - timedelta(hours=20), now.replace(hour=10))


@pytest.mark.slow
@pytest.mark.postgres
def test_two_daemons_on_one_postgres_one_leads_the_other_takes_over(
    fleet: FleetHandle, tmp_path: Path, pg_url: str
) -> None:
    import sqlalchemy

    config = write_config(
        tmp_path,
        [provider("bolt", fleet.base_url("bolt"))],
        pg_url,
        reference=endpoint_reference(fleet.base_url("acme")),
        extra={
            "schedule": [{"suite": "mini", "every": "1s"}],
            "server": {"host": "127.0.0.1", "port": 0},
            "daemon": {"lock_retry": "0.5s", "shutdown_deadline": "3s"},
        },
    )
    engine = sqlalchemy.create_engine(pg_url)

    def pids() -> list[int]:
        with engine.connect() as conn:
            try:
                rows = conn.execute(sqlalchemy.text("SELECT pid FROM rounds")).all()
            except sqlalchemy.exc.ProgrammingError:
                return []  # no schema yet
        return [r[0] for r in rows]

    daemons = [
        subprocess.Popen(
            [AUDITOR, "daemon", "-c", str(config)],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / f"daemon-{i}.log").open("w"),
        )
        for i in range(2)
    ]
    try:
        assert wait_until(lambda: len(pids()) >= 3, 60)
        (leader,) = set(pids())  # only one of them runs rounds
        assert leader in {d.pid for d in daemons}
        first = next(d for d in daemons if d.pid == leader)
        first.kill()  # dies holding the lock: PostgreSQL ends its session
        first.wait()
        standby = next(d for d in daemons if d.pid != leader)
        assert wait_until(lambda: standby.pid in pids(), 30)
        with engine.connect() as conn:
            running = conn.execute(
                sqlalchemy.text(
                    "SELECT count(*) FROM rounds WHERE status = 'running' AND pid = :p"
                ),
                {"p": leader},
            ).scalar()
        assert running == 0  # the dead leader's round was marked interrupted
        standby.send_signal(signal.SIGTERM)
        assert standby.wait(timeout=10) == 0
    finally:
        for d in daemons:
            if d.poll() is None:
                d.kill()
        engine.dispose()
