"""`auditor alerts test|list|enable` as a user runs them, against a real receiver."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.cli import provider, run_auditor, write_config

from tests.alerts.receiver import NEW_SECRET, OLD_SECRET, Receiver, Reply

pytestmark = pytest.mark.slow  # each test runs the console script, some more than once


def config_with(tmp_path: Path, *sinks: dict[str, object]) -> Path:
    return write_config(
        tmp_path,
        [provider("acme", "http://127.0.0.1:9/v1")],
        f"sqlite:///{tmp_path / 'auditor.db'}",
        extra={"alerts": {"sinks": list(sinks), "give_up_after": "1h", "max_backoff": "1m"}},
    )


def hook(name: str, url: str) -> dict[str, object]:
    return {"name": name, "url": url, "secret_env": "HOOK_SECRET", "timeout_s": 5}


ENV = {"HOOK_SECRET": f"{NEW_SECRET} {OLD_SECRET}"}


def test_alerts_test_sends_a_signed_test_event(tmp_path: Path, receiver: Receiver) -> None:
    path = config_with(tmp_path, hook("ops", receiver.url))
    result = run_auditor("alerts", "test", "-c", str(path), cwd=tmp_path, env=ENV)
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    name, outcome, status, msg_id = line.split("\t")
    assert (name, outcome, status) == ("ops", "delivered", "200")
    [got] = receiver.requests
    assert got.verified and got.msg_id == msg_id
    assert receiver.processed[msg_id]["type"] == "test"
    listed = run_auditor("alerts", "list", "-c", str(path), cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    fields = listed.stdout.splitlines()[0].split("\t")
    assert fields == [msg_id, "ops", "test", "delivered", "1", "200", "-"]
    for text in (result.stdout, result.stderr, listed.stdout):
        assert NEW_SECRET not in text and OLD_SECRET not in text


def test_alerts_test_reports_each_sink_and_fails(tmp_path: Path, receiver: Receiver) -> None:
    broken = Receiver([NEW_SECRET]).start()
    try:
        broken.script(Reply(500, body="internal error"))
        path = config_with(tmp_path, hook("ops", receiver.url), hook("broken", broken.url))
        result = run_auditor("alerts", "test", "-c", str(path), cwd=tmp_path, env=ENV)
        assert result.returncode == 1
        lines = {line.split("\t")[0]: line.split("\t") for line in result.stdout.splitlines()}
        assert lines["ops"][1:3] == ["delivered", "200"]
        assert lines["broken"][1:3] == ["failed", "500"]
        assert lines["broken"][4] == "HTTP 500: internal error"
        assert len(broken.requests) == 1  # one attempt: a test is not retried later
        failed = run_auditor("alerts", "list", "--state", "failed", "-c", str(path), cwd=tmp_path)
        assert [line.split("\t")[1] for line in failed.stdout.splitlines()] == ["broken"]
        only = run_auditor(
            "alerts", "test", "--sink", "ops", "-c", str(path), cwd=tmp_path, env=ENV
        )
        assert only.returncode == 0 and only.stdout.startswith("ops\tdelivered")
    finally:
        broken.stop()


def test_alerts_test_without_the_secret(tmp_path: Path, receiver: Receiver) -> None:
    path = config_with(tmp_path, hook("ops", receiver.url))
    result = run_auditor("alerts", "test", "-c", str(path), cwd=tmp_path, env={"HOOK_SECRET": ""})
    assert result.returncode == 1
    assert result.stdout.split("\t")[:3] == ["ops", "failed", "-"]
    assert "environment variable HOOK_SECRET is not set" in result.stdout
    assert receiver.requests == []


def test_alerts_test_to_a_gone_sink_disables_it(tmp_path: Path, receiver: Receiver) -> None:
    receiver.script(Reply(410))
    path = config_with(tmp_path, hook("ops", receiver.url))
    first = run_auditor("alerts", "test", "-c", str(path), cwd=tmp_path, env=ENV)
    assert first.returncode == 1 and first.stdout.split("\t")[1:3] == ["disabled", "410"]
    second = run_auditor("alerts", "test", "-c", str(path), cwd=tmp_path, env=ENV)
    assert second.returncode == 1 and second.stdout.split("\t")[1] == "disabled"
    assert len(receiver.requests) == 1  # not sent to a disabled sink
    enabled = run_auditor("alerts", "enable", "ops", "-c", str(path), cwd=tmp_path)
    assert enabled.returncode == 0, enabled.stderr
    third = run_auditor("alerts", "test", "-c", str(path), cwd=tmp_path, env=ENV)
    assert third.returncode == 0 and third.stdout.split("\t")[1] == "delivered"


def test_usage_errors(tmp_path: Path, receiver: Receiver) -> None:
    path = config_with(tmp_path, hook("ops", receiver.url))
    unknown = run_auditor("alerts", "test", "--sink", "nope", "-c", str(path), cwd=tmp_path)
    assert unknown.returncode == 2
    assert unknown.stderr == "auditor: error: --sink: unknown sink 'nope' (known: ops)\n"
    empty = config_with(tmp_path)
    none = run_auditor("alerts", "test", "-c", str(empty), cwd=tmp_path)
    assert none.returncode == 2
    assert "alerts.sinks: no webhook sink configured" in none.stderr
    assert len(none.stderr.splitlines()) == 1
    bad_state = run_auditor("alerts", "list", "--state", "lost", "-c", str(path), cwd=tmp_path)
    assert bad_state.returncode == 2 and len(bad_state.stderr.splitlines()) == 1
    not_disabled = run_auditor("alerts", "enable", "ops", "-c", str(path), cwd=tmp_path)
    assert not_disabled.returncode == 2
