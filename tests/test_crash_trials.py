"""Kill -9 at random points of a round, again and again: the database always opens cleanly,
no answered sample is lost, no row is duplicated or half written, the next command marks
the killed round interrupted, and the next round runs.

Each trial runs `auditor run` against a real recording provider (numbered answers, each
logged once the server has written it whole, as in test_crash_and_secrets.py) and the echo
fleet (a fast member that streams, a slow drip, a flaky one), then SIGKILLs it at a random
moment: before the round starts, while answers arrive, or while the findings are written.

Starting the `auditor` console script costs seconds of imports on this machine, which would
leave no time for twenty trials. So each trial's process is forked from a warm "zygote"
(helpers/zygote.py): a process that has imported the auditor (and nothing else: no database,
no threads) and runs `auditor.cli.main(argv)` in a fresh child, exactly as the console script
does. The report after the trials is the real console script.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from auditor_fleet.process import running_fleet
from auditor_fleet.spec import FleetMember, FleetSpec
from helpers.cli import provider, run_auditor, write_config
from helpers.servers import RecordingProvider
from helpers.zygote import Zygote

pytestmark = pytest.mark.slow  # twenty kill -9 trials and more

TRIALS = 20
PG_TRIALS = 4
SETTLE_S = 1.0  # an answer written this long before the kill had reached the client

SUITE = {
    "suite": "crash",
    "defaults": {"params": {"max_tokens": 12}},
    "cases": [
        {
            "id": f"c{i}",
            "prompt": f"Tell me about item {i}.",
            "samples": 3,
            "params": {"temperature": 0 if i % 2 else 1},
        }
        for i in range(8)
    ],
}
REQUESTS = 24  # per provider


@pytest.fixture(scope="module")
def fleet() -> Iterator[dict[str, str]]:
    spec = FleetSpec(
        members=[
            FleetMember(name="echo", port=0, latency_ms=30),
            FleetMember(name="drip", port=0, fault="slow_drip", strength=3000),
            FleetMember(name="flaky", port=0, fault="flaky", strength=0.1),
        ]
    )
    with running_fleet(spec) as handle:
        yield {name: handle.base_url(name) for name in ("echo", "drip", "flaky")}


@dataclass
class Trial:
    killed_after_s: float  # since the fork
    killed_at: float
    sent: list[tuple[str, float]]


def setup_config(tmp_path: Path, database: str, recorder: str, fleet: dict[str, str]) -> Path:
    probes = tmp_path / "probes"
    probes.mkdir(exist_ok=True)
    (probes / "crash.yaml").write_text(yaml.safe_dump(SUITE))
    providers = [
        provider("rec", recorder, max_concurrency=2),
        provider("echo", fleet["echo"], max_concurrency=2, stream=True),
        provider("drip", fleet["drip"], max_concurrency=8, timeout_s=0.4),
        provider("flaky", fleet["flaky"], max_concurrency=4),
    ]
    return write_config(tmp_path, providers, database, suites=["crash"], probes_dir="probes")


class Database:
    """Read the results database directly (no auditor code), SQLite or PostgreSQL."""

    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        if self.url.startswith("sqlite"):
            with sqlite3.connect(self.url.removeprefix("sqlite:///")) as conn:
                return conn.execute(sql, params).fetchall()
        dsn = self.url.replace("postgresql+psycopg", "postgresql")
        with psycopg.connect(dsn) as conn:
            return conn.execute(sql.replace("?", "%s"), params).fetchall()

    def has_schema(self) -> bool:
        if self.url.startswith("sqlite"):
            return bool(self.query("SELECT 1 FROM sqlite_master WHERE name = 'samples'"))
        return bool(
            self.query("SELECT 1 FROM information_schema.tables WHERE table_name = ?", "samples")
        )


def check_database(db: Database, sent: set[str], settled: set[str]) -> None:
    if db.url.startswith("sqlite"):
        assert db.query("PRAGMA integrity_check") == [("ok",)]
    if not db.has_schema():
        assert not settled  # killed before the schema was created
        return
    duplicates = db.query(
        "SELECT round_id, provider_id, probe_hash, sample_index FROM samples "
        "GROUP BY round_id, provider_id, probe_hash, sample_index HAVING count(*) > 1"
    )
    assert not duplicates
    # Every stored answer is whole: its text, finish reason, raw body and scores are there
    # (a sample and its scores are committed in one transaction).
    incomplete = db.query(
        "SELECT s.id FROM samples s WHERE s.ok AND (s.output_text IS NULL OR "
        "s.finish_reason IS NULL OR s.response_json IS NULL OR "
        "NOT EXISTS (SELECT 1 FROM scores c WHERE c.sample_id = s.id))"
    )
    assert not incomplete
    errors = db.query("SELECT id FROM samples WHERE NOT ok AND error_class IS NULL")
    assert not errors
    stored = [
        text
        for (text,) in db.query(
            "SELECT s.output_text FROM samples s JOIN providers p ON p.id = s.provider_id "
            "WHERE p.name = 'rec' AND s.ok"
        )
    ]
    assert len(stored) == len(set(stored)), "an answer stored twice"
    assert set(stored) <= sent, "a stored answer the provider never sent whole"
    lost = settled - set(stored)
    assert not lost, (
        f"{len(lost)} answered samples lost",
        lost,
        db.query(
            "SELECT r.id, r.status, r.stop_reason, count(s.id) FROM rounds r LEFT JOIN samples s "
            "ON s.round_id = r.id GROUP BY r.id, r.status, r.stop_reason"
        ),
    )


PHASES = ["answers", "startup", "answers", "tail", "answers", "answers"]


def wait_for(condition: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def wait_to_kill(phase: str, rng: random.Random, answered: Any) -> None:
    """Wait for a random moment of the phase: while the process loads its config, migrates
    and starts the round (`startup`); while the recording provider's answers arrive
    (`answers`); or after its last answer, while the slow providers finish and the findings
    are written (`tail`). Phases are found by watching the provider, not by the clock, so
    that a loaded machine does not shift them."""
    if phase == "startup":
        time.sleep(rng.uniform(0.05, 0.8))
    elif phase == "answers":
        wait_for(lambda: answered() > 0, 10)
        time.sleep(rng.uniform(0.0, 1.0))
    else:
        wait_for(lambda: answered() >= REQUESTS, 15)
        time.sleep(rng.uniform(0.0, 1.5))


def run_trials(
    tmp_path: Path, database: str, trials: int, zygote: Zygote, fleet: dict[str, str]
) -> tuple[Path, Database, list[Trial]]:
    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    db = Database(database)
    done: list[Trial] = []
    with RecordingProvider(delay_s=0.08) as recorder:
        config = setup_config(tmp_path, database, recorder.base_url, fleet)
        before = 0
        for n in range(trials):
            out = tmp_path / f"trial-{n}.log"
            argv = ["run", "-c", str(config), "--no-progress"]
            started = time.monotonic()
            pid = zygote.spawn(argv, tmp_path, out, {})
            wait_to_kill(PHASES[n % len(PHASES)], rng, lambda b=before: len(recorder.sent) - b)
            os.kill(pid, signal.SIGKILL)
            killed_at = time.monotonic()
            status = zygote.wait(pid)
            log = out.read_text()
            assert "Traceback" not in log, log
            # Killed, or finished before the kill came (exit 0); nothing else.
            assert (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL) or (
                os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
            ), (status, log)
            # Requests in flight at the kill are still answered (to a dead client) for a
            # moment; they belong to this trial, unsettled.
            time.sleep(0.2)
            sent = list(recorder.sent)
            mine = sent[before:]
            before = len(sent)
            settled = {answer for answer, at in mine if at < killed_at - SETTLE_S}
            check_database(db, {answer for answer, _ in sent}, settled)
            done.append(Trial(killed_at - started, killed_at, mine))
            # The rounds of earlier trials were marked by the commands that followed them.
            if db.has_schema():
                assert len(db.query("SELECT id FROM rounds WHERE status = 'running'")) <= 1
    return config, db, done


def assert_aftermath(
    config: Path,
    db: Database,
    trials: list[Trial],
    tmp_path: Path,
    zygote: Zygote,
    console_script: bool,
) -> None:
    # The next commands open the database cleanly and mark the last killed round too.
    code, output = zygote.command(["db", "status", "-c", str(config)], tmp_path)
    assert code == 0 and "Traceback" not in output, output
    report = ["report", "-c", str(config), "--format", "json"]
    if console_script:  # the real thing, once
        result = run_auditor(*report, cwd=tmp_path)
        code, output = result.returncode, result.stdout + result.stderr
    else:
        code, output = zygote.command(report, tmp_path)
    assert code == 0 and "Traceback" not in output, output
    last = json.loads(output[output.index("{") :])["round"]
    assert last["status"] in ("interrupted", "complete")
    assert db.query("SELECT id FROM rounds WHERE status = 'running'") == []
    rounds = db.query("SELECT status, stop_reason FROM rounds")
    assert {s for s, _ in rounds} <= {"interrupted", "complete"}
    assert all(reason == "process died" for s, reason in rounds if s == "interrupted")
    killed_mid_round = [t for t in trials if t.sent]
    assert len(killed_mid_round) >= len(trials) // 2, "too few kills landed inside a round"


def assert_next_round_runs(config: Path, db: Database, tmp_path: Path, zygote: Zygote) -> None:
    with RecordingProvider() as recorder:
        data = yaml.safe_load(config.read_text())
        data["models"][0]["providers"][0]["base_url"] = recorder.base_url
        config.write_text(yaml.safe_dump(data, sort_keys=False))
        code, output = zygote.command(["run", "-c", str(config), "--no-progress"], tmp_path)
        assert code == 0 and "Traceback" not in output, output
        sent = {answer for answer, _ in recorder.sent}
    (last,) = db.query("SELECT id, status FROM rounds ORDER BY started_at DESC LIMIT 1")
    assert last[1] == "complete"
    assert db.query("SELECT count(*) FROM samples WHERE round_id = ?", last[0]) == [(4 * REQUESTS,)]
    stored = db.query("SELECT output_text FROM samples WHERE round_id = ? AND ok", last[0])
    assert sent <= {text for (text,) in stored}


def test_kill_9_at_random_points_of_a_round_sqlite(
    tmp_path: Path, zygote: Zygote, fleet: dict[str, str]
) -> None:
    database = f"sqlite:///{tmp_path / 'auditor.db'}"
    config, db, trials = run_trials(tmp_path, database, TRIALS, zygote, fleet)
    assert_aftermath(config, db, trials, tmp_path, zygote, console_script=True)
    assert_next_round_runs(config, db, tmp_path, zygote)


@pytest.mark.postgres
def test_kill_9_at_random_points_of_a_round_postgres(
    tmp_path: Path, pg_url: str, zygote: Zygote, fleet: dict[str, str]
) -> None:
    config, db, trials = run_trials(tmp_path, pg_url, PG_TRIALS, zygote, fleet)
    assert_aftermath(config, db, trials, tmp_path, zygote, console_script=False)
