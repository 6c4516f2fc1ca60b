"""A round's findings read from the database: a provider refusing prompts as too long that the
reference answered, judged with the context window the round recorded for the model."""

from __future__ import annotations

import json
from typing import Any

import pytest
from helpers.db import new_store

from auditor.judging.findings import build_findings
from auditor.providers import wire
from auditor.records import CompletionRequest, CompletionResponse, Message, ProbeCase, Usage
from auditor.storage.repository import Store
from auditor.storage.tables import RoundRow

CASES = [
    ProbeCase(
        id=f"p{i}",
        suite="s",
        messages=[Message(role="user", content=f"question {i}")],
        params={"temperature": 0, "max_tokens": 16},
    )
    for i in range(20)
]


def tokens(i: int) -> int:
    return 100 * (i + 1)  # the prompt of case i: 100 to 2,000 tokens


def vllm_400(i: int) -> CompletionResponse:
    body = {
        "error": {
            "message": "This model's maximum context length is 1536 tokens. However, you "
            f"requested 16 output tokens and your prompt contains at least {tokens(i)} input "
            "tokens, for a total of at least ... tokens.",
            "type": "BadRequestError",
            "param": "input_tokens",
            "code": 400,
        }
    }
    response = wire.http_error(400, json.dumps(body).encode())
    assert isinstance(response, CompletionResponse)
    return response


def answer(i: int) -> CompletionResponse:
    usage = Usage(prompt_tokens=tokens(i), completion_tokens=3, total_tokens=tokens(i) + 3)
    return CompletionResponse(ok=True, text=f"answer {i}", finish_reason="stop", usage=usage)


def judged(url: str, judging: dict[str, Any]) -> Any:
    store: Store = new_store(url)
    store.upsert_probe_cases(CASES)
    store.start_round(
        RoundRow(id="r", suite="s", suite_hash="h", auditor_version="t", judging=judging)
    )
    ref = store.upsert_provider("m", "reference", kind="reference")
    acme = store.upsert_provider("m", "acme")
    for i, case in enumerate(CASES):
        request = CompletionRequest.from_case(case, 0)
        store.add_sample("r", ref, request, answer(i), [], None)
        # acme's context ends at 1,536 tokens: it refuses the five longest prompts
        store.add_sample(
            "r", acme, request, vllm_400(i) if tokens(i) > 1536 else answer(i), [], None
        )
    (finding,), _, _ = build_findings(store, "r")
    return finding


@pytest.mark.parametrize("window", [None, 8192])
def test_refusals_below_the_declared_window_are_context_truncation(
    sqlite_url: str, window: int | None
) -> None:
    judging = {"context_window": {"m": window}} if window else {}
    finding = judged(sqlite_url, judging)
    assert finding.verdict == "deviant" and finding.diagnoses[0].kind == "context_truncation"
    assert finding.diagnoses[0].summary.startswith(
        "refuses prompts from 1,600 tokens (the reference's count) that the reference answered"
    )
    assert finding.diagnoses[0].summary.endswith(
        "answers up to 1,500; states a limit of 1,536 (5 of 20 requests): the context is "
        "shorter than the model's"
    )
    assert finding.errors_by_class == {"context_length_exceeded": 5}


def test_refusals_above_the_window_the_round_recorded_are_the_providers_right(
    sqlite_url: str,
) -> None:
    finding = judged(sqlite_url, {"context_window": {"m": 1536}})
    assert finding.verdict != "deviant" and finding.diagnoses == []
    assert not [t for t in finding.tests if t.name == "refusals:context_length"]
    assert finding.errors_by_class == {"context_length_exceeded": 5}
