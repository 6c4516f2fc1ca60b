"""The real daemon process: a 2-second schedule against local providers and a local webhook
receiver that verifies signatures; SIGTERM ends it cleanly. Plus the catch-up rule."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from auditor_fleet import FleetMember, FleetSpec
from auditor_fleet.process import FleetHandle, running_fleet
from helpers.cli import AUDITOR, endpoint_reference, provider, write_config
from helpers.db import new_store
from helpers.gate import TcpGate

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
            # A loaded machine may take over 2 intervals a round: no stale_rounds incident.
            "daemon": {"shutdown_deadline": "5s", "stale_factor": 30},
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


def leader_config(tmp_path: Path, fleet: FleetHandle, database: str) -> Path:
    """A daemon config on `database` with a round every second and quick lock retries."""
    return write_config(
        tmp_path,
        [provider("bolt", fleet.base_url("bolt"))],
        database,
        reference=endpoint_reference(fleet.base_url("acme")),
        extra={
            "schedule": [{"suite": "mini", "every": "1s"}],
            "server": {"host": "127.0.0.1", "port": 0},
            "daemon": {"lock_retry": "0.5s", "shutdown_deadline": "3s"},
        },
    )


@pytest.mark.slow
@pytest.mark.postgres
def test_two_daemons_on_one_postgres_one_leads_the_other_takes_over(
    fleet: FleetHandle, tmp_path: Path, pg_url: str
) -> None:
    import sqlalchemy

    config = leader_config(tmp_path, fleet, pg_url)
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


@pytest.mark.slow
@pytest.mark.postgres
def test_the_daemon_outlives_a_database_outage_and_leads_again(
    fleet: FleetHandle, tmp_path: Path, pg_url: str
) -> None:
    """PostgreSQL goes away for a few seconds (every connection reset, the port closed) and
    comes back: the daemon, leader or standby, neither exits nor stays stuck out of the
    lead; it runs complete rounds again, and none is left running."""
    import sqlalchemy

    gate, gated_url = TcpGate.before(pg_url)
    gate.open()
    config = leader_config(tmp_path, fleet, gated_url)
    engine = sqlalchemy.create_engine(pg_url)

    def rounds(status: str) -> list[datetime]:
        with engine.connect() as conn:
            try:
                rows = conn.execute(
                    sqlalchemy.text("SELECT started_at FROM rounds WHERE status = :s"),
                    {"s": status},
                ).all()
            except sqlalchemy.exc.ProgrammingError:
                return []  # no schema yet
        return [r[0].replace(tzinfo=r[0].tzinfo or UTC) for r in rows]

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
        assert wait_until(lambda: len(rounds("complete")) >= 2, 60)
        gate.cut()
        time.sleep(3)  # several lock retries and watchdog passes with the database away
        gate.open()
        back = datetime.now(UTC)
        assert wait_until(lambda: any(t > back for t in rounds("complete")), 60)
        assert all(d.poll() is None for d in daemons)  # neither stopped on its own
        for d in daemons:
            d.send_signal(signal.SIGTERM)
        assert [d.wait(timeout=30) for d in daemons] == [0, 0]
        assert rounds("running") == []  # a round cut off by the outage is interrupted
    finally:
        for d in daemons:
            if d.poll() is None:
                d.kill()
        gate.cut()
        engine.dispose()


RELEASE = """
import gc
from auditor.operations.daemon import release_memory

def anon_kib():
    for line in open('/proc/self/status'):
        if line.startswith('RssAnon:'):
            return int(line.split()[1])

gc.disable()  # as between the daemon's rare full collections
cycles = [[bytes(4000)] for _ in range(20000)]  # 80 MB held by reference cycles only
for cycle in cycles:
    cycle.append(cycle)
del cycles, cycle
before = anon_kib()
released = release_memory()
print(released, before, anon_kib())
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_after_a_round_its_garbage_goes_back_to_the_kernel() -> None:
    """A round leaves answers held by reference cycles that Python's rare full collection
    would free only much later (the chaos soak saw the daemon grow 5 MB a minute); the
    daemon collects them after each round and hands the freed heap back."""
    out = subprocess.run(
        [sys.executable, "-c", RELEASE], capture_output=True, text=True, check=True
    ).stdout.split()
    released, before, after = out[0] == "True", int(out[1]), int(out[2])
    assert released
    assert after < before - 60_000  # most of the cycles' 80 MB


async def test_a_leader_that_lost_its_lock_is_not_ready(sqlite_url: str) -> None:
    """While a leader that lost the lock (its database connection went) finishes its round,
    its scheduler is paused, not stopped: /readyz must not count it as leading."""
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from auditor.config import AuditorConfig
    from auditor.operations.daemon import Daemon

    config = AuditorConfig.model_validate(
        {
            "database": sqlite_url,
            "reference": None,
            "models": [{"name": "m", "providers": [provider("p", "http://127.0.0.1:9/v1")]}],
            "schedule": [{"suite": "mini", "every": "1h"}],
        }
    )
    daemon = Daemon(config, new_store(sqlite_url), None)
    assert not daemon.ready()  # no scheduler yet: a standby
    daemon.scheduler = AsyncIOScheduler(timezone=UTC)
    daemon.scheduler.start()
    try:
        assert daemon.ready()
        daemon._lost.set()  # the watchdog found the lock gone
        daemon.scheduler.pause()
        assert not daemon.ready()
    finally:
        daemon.scheduler.shutdown(wait=False)
