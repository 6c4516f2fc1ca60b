"""The leader lock, held by real processes: a second one waits and takes over when the first
dies (PostgreSQL advisory lock; a lock file on SQLite)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.gate import TcpGate

from auditor.operations.leader import PostgresLock, lock_for
from auditor.storage.db import make_engine

pytestmark = pytest.mark.slow  # processes taking over from each other, seconds apart

HOLDER = """
import sys, time
from auditor.operations.leader import lock_for
from auditor.storage.db import make_engine
lock = lock_for(make_engine(sys.argv[1]))
while not lock.try_acquire():
    time.sleep(0.1)
print("leader", flush=True)
while lock.still_held():
    time.sleep(0.1)
"""


def start(url: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, url], cwd=cwd, stdout=subprocess.PIPE, text=True
    )


def wait_for_line(proc: subprocess.Popen[str], timeout: float) -> bool:
    """Whether the process printed its `leader` line within `timeout` seconds."""
    import selectors

    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        return bool(sel.select(timeout)) and proc.stdout.readline().strip() == "leader"


@pytest.mark.parametrize("db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_standby_takes_over_when_the_leader_dies(
    db: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("sqlite_url" if db == "sqlite" else "pg_url")
    first = start(url, tmp_path)
    try:
        assert wait_for_line(first, 30)
        second = start(url, tmp_path)
        try:
            assert not wait_for_line(second, 2.0)  # the first one leads
            first.kill()  # dies without releasing anything
            first.wait()
            t0 = time.monotonic()
            assert wait_for_line(second, 30)
            assert time.monotonic() - t0 < 30
        finally:
            second.kill()
            second.wait()
    finally:
        first.kill()
        first.wait()


@pytest.mark.postgres
def test_taking_the_lock_with_the_database_away_is_a_no_not_an_error(pg_url: str) -> None:
    """A standby tries the lock every `lock_retry`, whatever the database is doing: with the
    server unreachable the answer is "not the leader", and it leads once it is back."""
    gate, gated_url = TcpGate.before(pg_url)
    lock = lock_for(make_engine(gated_url))
    assert isinstance(lock, PostgresLock)
    assert lock.try_acquire() is False  # nothing listens on the gate's port yet
    gate.open()
    try:
        assert lock.try_acquire() is True
        gate.cut()
        assert lock.still_held() is False  # the session is gone, and the lock with it
        assert lock.try_acquire() is False
    finally:
        lock.release()
        gate.cut()
