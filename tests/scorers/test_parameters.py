"""The parameters scorer: what one answer shows of the parameter its case tests."""

from __future__ import annotations

from typing import Any

import pytest

from auditor.records import CompletionResponse, Message, ProbeCase
from auditor.scorers.parameters import ParameterScorer

SCHEMA = {"type": "object", "properties": {"legs": {"type": "integer"}}, "required": ["legs"]}


def score(parameter: str, body: dict[str, Any], **answer: Any) -> float | None:
    case = ProbeCase(
        id="c",
        suite="params",
        messages=[Message(role="user", content="Hi")],
        metadata={"capability": parameter},
    )
    response = CompletionResponse(ok=True, raw_request=body, **answer)
    [record] = ParameterScorer().score(case, response)
    assert record.detail["parameter"] == parameter and record.detail["why"]
    return record.value


@pytest.mark.parametrize(
    ("parameter", "body", "answer", "expected"),
    [
        ("response_format.json_object", {}, {"text": '{"a": 1}\n'}, 1.0),
        ("response_format.json_object", {}, {"text": '```json\n{"a": 1}\n```'}, 0.0),
        ("response_format.json_object", {}, {"text": "[1, 2]"}, 0.0),
        ("response_format.json_object", {}, {"text": "Bananas"}, 0.0),
        ("response_format.json_schema",
         {"response_format": {"type": "json_schema", "json_schema": {"schema": SCHEMA}}},
         {"text": '{"legs": 8}'}, 1.0),
        ("response_format.json_schema",
         {"response_format": {"type": "json_schema", "json_schema": {"schema": SCHEMA}}},
         {"text": '{"legs": "eight"}'}, 0.0),
        ("stop", {"stop": ["5"]}, {"text": "1, 2, 3, 4, "}, 1.0),
        ("stop", {"stop": "5"}, {"text": "1, 2, 3, 4, 5, 6"}, 0.0),
        ("n", {"n": 2}, {"raw_response": {"choices": [{}, {}]}}, 1.0),
        ("n", {"n": 2}, {"raw_response": {"choices": [{}]}}, 0.0),
        ("n", {"n": 2}, {"raw_response": {"chunks": [
            {"choices": [{"index": 0}]}, {"choices": [{"index": 1}]}]}}, 1.0),
        ("logprobs", {"logprobs": True}, {"logprobs": [{"token": "a", "logprob": -0.1}]}, 1.0),
        ("logprobs", {"logprobs": True}, {"logprobs": None}, 0.0),
        ("seed", {"seed": 1}, {"text": "x"}, None),  # judged from pairs
    ],
)  # fmt: skip
def test_each_parameter_is_read_off_the_answer(
    parameter: str, body: dict[str, Any], answer: dict[str, Any], expected: float | None
) -> None:
    assert score(parameter, body, **answer) == expected


def test_cases_that_test_no_parameter_and_errors_get_no_score() -> None:
    case = ProbeCase(id="c", suite="s", messages=[Message(role="user", content="Hi")])
    assert ParameterScorer().score(case, CompletionResponse(ok=True, text="x")) == []
    case = case.model_copy(update={"metadata": {"capability": "stop"}})
    assert ParameterScorer().score(case, CompletionResponse(ok=False)) == []
