"""Structured JSON logs: one object a line, the round, provider and probe on each request's
event, and never a prompt or a secret, from a real `auditor run`."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from helpers.cli import MINI_SUITE, provider, run_auditor, write_config
from helpers.servers import RecordingProvider

from auditor import logs
from auditor.secrets import Redactor


def _prompt_texts() -> list[str]:
    texts = []
    for case in MINI_SUITE["cases"]:
        texts += [case[k] for k in ("prompt", "system") if k in case]
    return texts


@pytest.mark.slow
def test_a_rounds_json_logs_name_the_request_and_hold_no_prompt_or_secret(
    tmp_path: Path,
) -> None:
    key = "sk-logs-" + os.urandom(8).hex()
    env = {"ACME_API_KEY": key, "AUDITOR_LOG_LEVEL": "debug", "AUDITOR_LOG_FORMAT": "json"}
    with RecordingProvider() as good, RecordingProvider(echo_key=True) as leaky:
        providers = [
            provider("acme", good.base_url, api_key_env="ACME_API_KEY"),
            provider("leaky", leaky.base_url, api_key_env="ACME_API_KEY"),
        ]
        config = write_config(tmp_path, providers, f"sqlite:///{tmp_path / 'a.db'}")
        run = run_auditor("run", "-c", str(config), "--no-progress", cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr

    events = [json.loads(line) for line in run.stderr.splitlines() if line.strip()]
    assert events, "debug logs were asked for"
    for event in events:
        assert {"timestamp", "level", "event"} <= set(event), event
    stored = [e for e in events if e["event"] == "sample.stored"]
    assert {e["provider"] for e in stored} == {"acme", "leaky"}
    assert {e["probe_id"] for e in stored} == {c["id"] for c in MINI_SUITE["cases"]}
    (round_id,) = {e["round_id"] for e in stored}
    assert any(e["event"] == "round.finished" and e["round_id"] == round_id for e in events)

    assert key not in run.stderr and key not in run.stdout
    leaked = [t for t in _prompt_texts() if t in run.stderr]
    assert not leaked


@pytest.fixture
def restore_logs() -> Iterator[None]:
    """Set up before capsys, so torn down after it: the loggers must not keep writing to
    capsys's stream once it is closed."""
    yield
    logs.configure(level="warning", json_lines=False, redactor=Redactor([]))


def test_reconfiguring_keeps_the_redactor(
    restore_logs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure(level="info", json_lines=False, redactor=Redactor(["sk-kept-123456"]))
    logs.configure(json_lines=True)  # e.g. the daemon switching to JSON after the config
    structlog.get_logger("t").info("provider.said", message="key sk-kept-123456", provider="p")
    line = capsys.readouterr().err.strip().splitlines()[-1]
    event = json.loads(line)
    assert event["message"] == "key [REDACTED]" and event["provider"] == "p"
