"""Tools through a fleet member's HTTP layer, with a scripted backend (no model): rendering,
parsing, streaming and the tool faults, spoken to by the official openai client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from auditor_fleet import (
    DEFAULT_MODEL,
    Backend,
    ChatMessage,
    ChatRequest,
    FleetMember,
    FleetSpec,
    Generation,
    backends,
)
from auditor_fleet.process import FleetHandle, running_fleet
from auditor_fleet.tools import corrupt_arguments

CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
SEEN: list[list[ChatMessage]] = []


@backends.register("test-tools")
class ScriptedBackend(Backend):
    """Calls get_weather when the conversation it is given offers tools; else says hi."""

    def generate(self, request: ChatRequest, on_text: Any = None) -> Generation:
        SEEN.append(request.messages)
        offered = any("<tools>" in m.text() for m in request.messages if m.role == "system")
        text = f"Let me look.\n{CALL}" if offered else "Hi."
        return Generation(text=text, prompt_tokens=10, completion_tokens=len(text.split()))


MEMBERS: list[dict[str, Any]] = [
    {"name": "honest"},
    {"name": "raw", "fault": "tool_parser_raw"},
    {"name": "corrupt", "fault": "tool_args_corrupt"},
    {"name": "half", "fault": "tool_parser_raw", "strength": 0.5},
    {"name": "streamdiff", "fault": "stream_tools_differ"},
    {"name": "streamhalf", "fault": "stream_tools_differ", "strength": 0.5},
]


@pytest.fixture(scope="module")
def fleet() -> Iterator[FleetHandle]:
    members = [FleetMember(port=0, backend="test-tools", **m) for m in MEMBERS]
    with running_fleet(FleetSpec(members=members, seed=1)) as handle:
        yield handle


def chat(fleet: FleetHandle, name: str, **kwargs: Any) -> Any:
    client = openai.OpenAI(base_url=fleet.base_url(name), api_key="x", max_retries=0)
    kwargs.setdefault("messages", [{"role": "user", "content": "Weather in Paris?"}])
    kwargs.setdefault("tools", [WEATHER])
    return client.chat.completions.create(model=DEFAULT_MODEL, **kwargs)


def test_an_honest_member_parses_the_call_and_sees_the_tools(fleet: FleetHandle) -> None:
    answer = chat(fleet, "honest")
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me look."
    (call,) = choice.message.tool_calls
    assert call.id == "call_0" and call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    system = SEEN[-1][0]
    assert system.role == "system" and '"name": "get_weather"' in system.text()


def streamed(fleet: FleetHandle, name: str) -> tuple[str, list[tuple[str, str, str]], list[Any]]:
    """A streamed answer's text and calls, assembled as OpenAI clients assemble them (by
    index: the first id wins, names and arguments are concatenated), and its chunks."""
    client = openai.OpenAI(base_url=fleet.base_url(name), api_key="x", max_retries=0)
    chunks = list(
        client.chat.completions.create(
            model=DEFAULT_MODEL,
            messages=[{"role": "user", "content": "Weather in Paris?"}],
            tools=[WEATHER],
            stream=True,
        )
    )
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    calls: dict[int, list[str]] = {}
    for delta in deltas:
        for t in delta.tool_calls or []:
            slot = calls.setdefault(t.index, ["", "", ""])
            slot[0] = slot[0] or t.id or ""
            slot[1] += (t.function and t.function.name) or ""
            slot[2] += (t.function and t.function.arguments) or ""
    text = "".join(d.content or "" for d in deltas)
    return text, [(i, n, a) for i, n, a in (calls[k] for k in sorted(calls))], chunks


def test_a_stream_carries_the_same_call(fleet: FleetHandle) -> None:
    text, calls, chunks = streamed(fleet, "honest")
    assert text == "Let me look."
    assert calls == [("call_0", "get_weather", '{"city": "Paris"}')]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    # as OpenAI streams a call: id, type and name first, then the arguments in pieces
    pieces = [t for c in chunks if c.choices for t in c.choices[0].delta.tool_calls or []]
    assert pieces[0].id == "call_0" and pieces[0].function.arguments == ""
    assert len(pieces) > 2 and all(p.id is None for p in pieces[1:])


def test_stream_tools_differ_breaks_the_streamed_arguments_only(fleet: FleetHandle) -> None:
    (call,) = chat(fleet, "streamdiff").choices[0].message.tool_calls
    assert call.function.arguments == '{"city": "Paris"}'
    text, calls, _ = streamed(fleet, "streamdiff")
    assert text == "Let me look."
    assert calls == [("call_0", "get_weather", '{"city": "Paris"')]
    # a stream without tools is untouched
    plain = chat(fleet, "streamdiff", tools=openai.NOT_GIVEN, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in plain if c.choices) == "Hi."


def test_stream_tools_differ_strength_is_the_share_of_streams_broken(fleet: FleetHandle) -> None:
    broken = [streamed(fleet, "streamhalf")[1][0][2].endswith('"') for _ in range(40)]
    assert 8 <= sum(broken) <= 32
    whole = [chat(fleet, "streamhalf").choices[0].message.tool_calls for _ in range(5)]
    assert all(c[0].function.arguments == '{"city": "Paris"}' for c in whole if c)


def test_tool_turns_in_the_history_reach_the_backend_as_plain_turns(fleet: FleetHandle) -> None:
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_0",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_0", "content": '{"sky": "cloudy"}'},
    ]
    chat(fleet, "honest", messages=history)
    roles = [m.role for m in SEEN[-1]]
    assert roles == ["system", "user", "assistant", "user"]
    assert SEEN[-1][2].text().startswith("<tool_call>\n{")
    assert SEEN[-1][3].text() == 'Tool result: {"sky": "cloudy"}'


def test_without_tools_or_with_tool_choice_none_nothing_is_offered(fleet: FleetHandle) -> None:
    plain = chat(fleet, "honest", tools=openai.NOT_GIVEN)
    assert plain.choices[0].message.content == "Hi." and not plain.choices[0].message.tool_calls
    assert [m.role for m in SEEN[-1]] == ["user"]
    none = chat(fleet, "honest", tool_choice="none")
    assert none.choices[0].finish_reason == "stop" and not none.choices[0].message.tool_calls


def test_a_raw_member_sends_the_call_text_as_content(fleet: FleetHandle) -> None:
    choice = chat(fleet, "raw").choices[0]
    assert choice.finish_reason == "stop" and not choice.message.tool_calls
    assert choice.message.content == f"Let me look.\n{CALL}"


def test_a_corrupting_member_breaks_the_arguments(fleet: FleetHandle) -> None:
    (call,) = chat(fleet, "corrupt").choices[0].message.tool_calls
    assert call.function.arguments == '{"city": "Paris"'
    assert corrupt_arguments("{}") == "{" and corrupt_arguments("") == "{"


def test_strength_is_the_share_of_tool_requests_broken(fleet: FleetHandle) -> None:
    raw = [not chat(fleet, "half").choices[0].message.tool_calls for _ in range(40)]
    assert 8 <= sum(raw) <= 32
