"""The redactor: the last line of defence when a provider echoes a key back."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditor.config import load_config
from auditor.records import CompletionResponse
from auditor.secrets import REDACTED, Redactor


def test_redacts_nested_values_and_keys() -> None:
    r = Redactor(["sk-secret-123", "abc"])  # too short to redact safely: left alone
    data = {
        "error": {"message": "bad key sk-secret-123"},
        "sk-secret-123": ["x sk-secret-123 y"],
        "n": 3,
    }
    assert r.value(data) == {
        "error": {"message": f"bad key {REDACTED}"},
        REDACTED: [f"x {REDACTED} y"],
        "n": 3,
    }
    assert r.text("abc") == "abc"


def test_longest_secret_first() -> None:
    r = Redactor(["secret-1", "secret-1-extended"])
    assert r.text("secret-1-extended") == REDACTED


def test_response_fields_are_redacted() -> None:
    r = Redactor(["sk-secret-123"])
    resp = CompletionResponse(
        ok=False,
        error_message="401: sk-secret-123",
        raw_response={"raw_text": "sk-secret-123"},
        headers={"x-echo": "sk-secret-123"},
    )
    out = r.redact_response(resp)
    assert "sk-secret-123" not in out.model_dump_json()
    assert out.error_message == f"401: {REDACTED}"


def test_from_config_collects_keys_and_header_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("K1", "key-value-one")
    monkeypatch.setenv("H1", "header-value-one")
    path = tmp_path / "p.yaml"
    path.write_text(
        "models:\n- name: m\n  providers:\n"
        "  - {name: a, base_url: 'http://127.0.0.1:1/v1', model: m,"
        " api_key_env: K1, headers: {X-T: '${H1}'}}\n"
    )
    r = Redactor.from_config(load_config(path))
    assert r.text("key-value-one header-value-one") == f"{REDACTED} {REDACTED}"
