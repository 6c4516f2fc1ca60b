"""The webhook documentation says what the code does: the body in the README's Webhooks
section, the sink config and the receiver in docs/operations.md's."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers.cli import ROOT
from standardwebhooks import Webhook

from auditor.alerts.payload import body_for
from auditor.alerts.signing import body_text, signed_headers
from auditor.operations.settings import AlertsConfig
from tests.alerts.receiver import NEW_SECRET, OLD_SECRET, T0, incident_event

README = ROOT / "README.md"
OPERATIONS = ROOT / "docs" / "operations.md"


def section(page: Path) -> str:
    """The page's `## Webhooks` section, up to the next `## ` heading."""
    text = page.read_text()
    start = text.index("\n## Webhooks\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def block(lang: str, page: Path) -> str:
    return re.findall(rf"```{lang}\n(.*?)```", section(page), re.S)[0]


def shape(value: Any) -> Any:
    """Keys all the way down (the first item of a list stands for all)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return None


def test_config_example_is_valid() -> None:
    config = AlertsConfig.model_validate(yaml.safe_load(block("yaml", OPERATIONS))["alerts"])
    assert config.sinks[0].secret_env == "AUDITOR_WEBHOOK_SECRET"


def test_body_example_has_the_shape_of_a_real_body() -> None:
    example = json.loads(block("json", README))
    real = body_for(incident_event(), AlertsConfig.model_validate(
        yaml.safe_load(block("yaml", OPERATIONS))["alerts"]).sinks[0], T0)  # fmt: skip
    assert shape(example) == shape(real)


def test_receiver_snippet_verifies_and_deduplicates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDITOR_WEBHOOK_SECRET", OLD_SECRET)
    seen: set[str] = set()
    handled: list[Any] = []
    scope = {"already_handled": seen.__contains__, "remember": seen.add, "handle": handled.append}
    exec(block("python", OPERATIONS), scope)
    body = body_text({"type": "test", "timestamp": "2026-11-25T14:00:00Z", "data": {}})
    rotating = [Webhook(NEW_SECRET), Webhook(OLD_SECRET)]
    headers = signed_headers("msg_1", body, rotating)
    assert scope["receive"](body.encode(), headers) == 200
    assert scope["receive"](body.encode(), headers) == 200  # a retry: not handled twice
    assert len(handled) == 1
    forged = signed_headers("msg_2", body, [Webhook(NEW_SECRET)])
    assert scope["receive"](body.encode(), forged) == 400
