"""A killed round loses nothing it had answered; no secret value is ever written anywhere."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from helpers.cli import AUDITOR, provider, run_auditor, write_config
from helpers.exports import parquet_text
from helpers.servers import RecordingProvider

pytestmark = pytest.mark.slow  # whole rounds through the console script, killed and not

MANY = {
    "suite": "many",
    "cases": [
        {"id": "count", "prompt": "Say a word.", "params": {"max_tokens": 4}, "samples": 400}
    ],
}


def stored_answers(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT output_text FROM samples WHERE ok")]


def child_pids(pid: int) -> set[int]:
    """The processes `pid` started (its writer among them), from /proc."""
    pids: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        pids.update(int(p) for p in (task / "children").read_text().split())
    return pids


def wait_gone(pids: set[int], timeout_s: float = 120.0) -> set[int]:
    """Wait until none of `pids` runs any more; those still running at the timeout."""
    deadline = time.monotonic() + timeout_s
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        alive = {p for p in alive if Path(f"/proc/{p}").exists() and not zombie(p)}
        time.sleep(0.05)
    return alive


def zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, IndexError):
        return False


def test_kill_9_keeps_every_answered_sample(tmp_path: Path) -> None:
    probes = tmp_path / "probes"
    probes.mkdir()
    (probes / "many.yaml").write_text(yaml.safe_dump(MANY))
    db = tmp_path / "auditor.db"
    with RecordingProvider(delay_s=0.02) as server:
        config = write_config(
            tmp_path,
            [provider("acme", server.base_url, max_concurrency=4)],
            f"sqlite:///{db}",
            suites=["many"],
        )
        proc = subprocess.Popen(
            [AUDITOR, "run", "-c", str(config), "--no-progress"],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(server.sent) < 60:
            time.sleep(0.02)
        writers = child_pids(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_at = time.monotonic()
        sent = list(server.sent)
        # The writer outlives the round's process: it reads the pipe to its end, commits
        # that and exits (on a loaded machine that takes seconds). It must exit on its own.
        assert writers, "the round writes through a writer process"
        assert not wait_gone(writers), "the writer process must exit once its parent is gone"

    assert 60 <= len(sent) < 400, "the round must be killed midway"
    stored = stored_answers(db)
    assert len(stored) == len(set(stored)), "no duplicate rows"
    # Everything the server finished sending a full second before the kill had reached the
    # client long before; it must be in the database. (The rest may have been in flight.)
    settled = {answer for answer, at in sent if at < killed_at - 1.0}
    assert settled <= set(stored)
    assert len(stored) >= len(sent) - 4 * 2  # at most a few in flight per concurrency slot

    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)

    report = json.loads(
        run_auditor("report", "-c", str(config), "--format", "json", cwd=tmp_path).stdout
    )
    assert report["round"]["complete"] is False
    assert report["round"]["status"] == "interrupted"

    # The next round runs normally on the same database.
    with RecordingProvider() as server:
        data = yaml.safe_load(config.read_text())
        data["models"][0]["providers"][0]["base_url"] = server.base_url
        config.write_text(yaml.safe_dump(data))
        result = run_auditor(
            "run", "-c", str(config), "--no-progress", "--max-requests", "10", cwd=tmp_path
        )
        assert result.returncode == 0, result.stderr
    assert len(stored_answers(db)) == len(stored) + 10


def test_secret_values_appear_nowhere(tmp_path: Path) -> None:
    key = "sk-audit-" + os.urandom(8).hex()
    token = "tok-" + os.urandom(8).hex()
    env = {"ACME_API_KEY": key, "TEAM_TOKEN": token, "AUDITOR_LOG_LEVEL": "debug"}
    db = tmp_path / "auditor.db"
    with RecordingProvider() as good, RecordingProvider(echo_key=True) as leaky:
        providers = [
            provider(
                "acme",
                good.base_url,
                api_key_env="ACME_API_KEY",
                headers={"X-Team": "${TEAM_TOKEN}"},
            ),
            provider("leaky", leaky.base_url, api_key_env="ACME_API_KEY"),
        ]
        config = write_config(tmp_path, providers, f"sqlite:///{db}")
        run = run_auditor("run", "-c", str(config), cwd=tmp_path, env=env)
        assert run.returncode == 0, run.stderr
        # The key and header really were sent: the test would prove nothing otherwise.
        assert good.headers_seen[0]["authorization"] == f"Bearer {key}"
        assert good.headers_seen[0]["x-team"] == token

    outputs = [run.stdout, run.stderr]
    for args in (
        ("report", "--format", "json"),
        ("report", "--format", "markdown"),
        ("report",),
        ("export", "--format", "jsonl"),
        ("export", "--format", "csv"),
        ("export", "--format", "parquet", "-o", "pq"),
        ("compare",),
    ):
        result = run_auditor(*args, "-c", str(config), cwd=tmp_path, env=env)
        assert result.returncode == 0, result.stderr
        outputs += [result.stdout, result.stderr]
    exported = sorted((tmp_path / "pq").rglob("*.parquet"))
    assert exported, "the Parquet export wrote files"
    outputs += [parquet_text(p) for p in exported]  # compressed: every value decoded
    leaked = [o for o in outputs if key in o or token in o]
    assert not leaked
    assert "[REDACTED]" in "".join(outputs), "the echoed key was stored, redacted"
    for path in tmp_path.glob("auditor.db*"):
        blob = path.read_bytes()
        assert key.encode() not in blob and token.encode() not in blob, path
