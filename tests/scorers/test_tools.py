"""The tools scorer: a call made, to a known function, with arguments valid against its schema."""

from __future__ import annotations

from typing import Any

from auditor.records import CompletionResponse, Message, ProbeCase, RequestParams
from auditor.scorers import scorers
from auditor.scorers.tools import ToolScorer

ORDER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "lookup_order",
        "description": "Look up one field of a customer order.",
        "parameters": {
            "type": "object",
            "properties": {
                "order_id": {"type": "string"},
                "field": {"type": "string", "enum": ["status", "delivery_date", "total"]},
            },
            "required": ["order_id", "field"],
            "additionalProperties": False,
        },
    },
}
ANYTHING: dict[str, Any] = {"type": "function", "function": {"name": "ping"}}
CASE = ProbeCase(
    id="order",
    suite="tools",
    messages=[Message(role="user", content="When will order A-1 arrive?")],
    params=RequestParams(temperature=0, tools=[ORDER, ANYTHING]),
)


def call(name: str, arguments: str, index: int = 0) -> dict[str, Any]:
    return {
        "id": f"call_{index}",
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


def scores(*calls: dict[str, Any], text: str | None = None, case: ProbeCase = CASE) -> dict:
    response = CompletionResponse(
        ok=True,
        text=text,
        finish_reason="tool_calls" if calls else "stop",
        tool_calls=list(calls) or None,
    )
    return {r.metric: r.value for r in ToolScorer().score(case, response)}


def test_registered_as_a_built_in_scorer() -> None:
    assert scorers.get("tools") is ToolScorer


def test_a_valid_call() -> None:
    got = scores(call("lookup_order", '{"order_id": "A-1", "field": "delivery_date"}'))
    assert got == {
        "tool_called": 1.0,
        "tool_name_known": 1.0,
        "tool_args_json": 1.0,
        "tool_args_valid": 1.0,
    }


def test_no_call_is_scored_as_such_and_nothing_else() -> None:
    assert scores(text="It arrives tomorrow.") == {"tool_called": 0.0}
    # the call text of a host that does not parse calls is no call
    raw = '<tool_call>{"name": "lookup_order", "arguments": {}}</tool_call>'
    assert scores(text=raw) == {"tool_called": 0.0}


def test_a_value_outside_the_enum_is_invalid() -> None:
    records = ToolScorer().score(
        CASE,
        CompletionResponse(
            ok=True,
            finish_reason="tool_calls",
            tool_calls=[call("lookup_order", '{"field": "date", "order_id": "A-1042"}')],
        ),
    )
    got = {r.metric: r for r in records}
    assert got["tool_name_known"].value == 1.0 and got["tool_args_json"].value == 1.0
    assert got["tool_args_valid"].value == 0.0 and got["tool_args_valid"].passed is False
    assert got["tool_args_valid"].detail["problem"].startswith("lookup_order: field: 'date'")


def test_missing_required_and_extra_fields_are_invalid() -> None:
    assert scores(call("lookup_order", '{"order_id": "A-1"}'))["tool_args_valid"] == 0.0
    extra = '{"order_id": "A-1", "field": "total", "note": "x"}'
    assert scores(call("lookup_order", extra))["tool_args_valid"] == 0.0


def test_arguments_that_are_not_a_json_object() -> None:
    broken = scores(call("lookup_order", '{"order_id": "A-1", "field": "total"'))
    assert broken["tool_args_json"] == 0.0 and broken["tool_args_valid"] == 0.0
    listed = scores(call("ping", "[1, 2]"))
    assert listed["tool_args_json"] == 0.0 and listed["tool_args_valid"] == 0.0


def test_arguments_python_cannot_read_are_a_problem_not_a_crash() -> None:
    # valid JSON, but a number past Python's limit of digits for an int
    huge = scores(call("ping", '{"n": ' + "9" * 5000 + "}"))
    assert huge["tool_args_json"] == 0.0 and huge["tool_args_valid"] == 0.0


def test_an_unknown_function_fails_name_and_arguments() -> None:
    got = scores(call("weather_description", '{"description": "Paris"}'))
    assert got["tool_name_known"] == 0.0 and got["tool_args_valid"] == 0.0
    assert got["tool_args_json"] == 1.0


def test_a_function_without_parameters_takes_any_object() -> None:
    assert scores(call("ping", '{"anything": [1]}'))["tool_args_valid"] == 1.0


def test_every_call_must_be_valid() -> None:
    good = call("lookup_order", '{"order_id": "A-1", "field": "total"}')
    bad = call("lookup_order", '{"order_id": 7, "field": "total"}', 1)
    assert scores(good, bad)["tool_args_valid"] == 0.0


def test_cases_without_tools_and_failed_requests_are_not_scored() -> None:
    plain = CASE.model_copy(update={"params": RequestParams(temperature=0)})
    assert scores(call("ping", "{}"), case=plain) == {}
    failed = CompletionResponse(ok=False, error_class="server_error", status_code=500)
    assert ToolScorer().score(CASE, failed) == []
