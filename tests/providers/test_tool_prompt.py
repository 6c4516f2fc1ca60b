"""Tools offered in the prompt (Hermes/Qwen style) and tool calls parsed back from the text."""

from __future__ import annotations

import json
from typing import Any

from auditor.providers.tool_prompt import (
    needs_rendering,
    parse_tool_calls,
    tool_answer,
    tools_instruction,
    with_tools,
)

WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def call(name: str, arguments: str, index: int = 0) -> dict[str, Any]:
    return {
        "id": f"call_{index}",
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


def test_tools_go_into_a_new_system_message() -> None:
    out = with_tools([{"role": "user", "content": "Weather in Paris?"}], [WEATHER])
    assert [m["role"] for m in out] == ["system", "user"]
    system = out[0]["content"]
    assert "<tools>\n" in system and "\n</tools>" in system
    assert json.dumps(WEATHER, sort_keys=True) in system
    assert "<tool_call>" in system and '"arguments": <args-json-object>' in system
    assert out[1] == {"role": "user", "content": "Weather in Paris?"}


def test_the_callers_system_message_is_extended_not_replaced() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
    ]
    out = with_tools(messages, [WEATHER])
    assert len(out) == 2 and out[0]["content"].startswith("Be brief.\n\n# Tools")


def test_the_prompt_does_not_depend_on_the_order_of_a_tools_keys() -> None:
    reordered = json.loads(json.dumps(WEATHER, sort_keys=True))
    reordered["function"] = dict(reversed(list(reordered["function"].items())))
    messages = [{"role": "user", "content": "Hi"}]
    assert with_tools(messages, [WEATHER]) == with_tools(messages, [reordered])


def test_tool_choice_none_offers_nothing_and_required_insists() -> None:
    messages = [{"role": "user", "content": "Hi"}]
    assert with_tools(messages, [WEATHER], "none") == messages
    assert not needs_rendering(messages, [WEATHER], "none")
    assert tools_instruction([WEATHER], "required").endswith("You must call at least one function.")
    named = {"type": "function", "function": {"name": "get_weather"}}
    assert tools_instruction([WEATHER], named).endswith("You must call the function get_weather.")


def test_history_with_calls_and_results_is_rendered_as_plain_turns() -> None:
    messages = [
        {"role": "user", "content": "Weather in Rome and Oslo?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                call("get_weather", '{"city": "Rome"}'),
                call("get_weather", "{not json", 1),
            ],
        },
        {"role": "tool", "tool_call_id": "call_0", "content": '{"sky": "sunny"}'},
        {"role": "tool", "tool_call_id": "call_1", "content": "error"},
        {"role": "assistant", "content": "Sunny in Rome."},
    ]
    out = with_tools(messages, None)
    assert [m["role"] for m in out] == ["user", "assistant", "user", "assistant"]
    assert all(set(m) == {"role", "content"} for m in out)
    assert out[1]["content"] == (
        '<tool_call>\n{"arguments": {"city": "Rome"}, "name": "get_weather"}\n</tool_call>\n'
        '<tool_call>\n{"arguments": "{not json", "name": "get_weather"}\n</tool_call>'
    )
    assert out[2]["content"] == 'Tool result: {"sky": "sunny"}\nTool result: error'
    assert needs_rendering(messages, None)
    assert not needs_rendering([{"role": "user", "content": "Hi"}], None)


def test_content_parts_are_read_as_text() -> None:
    parts = [
        {"type": "text", "text": "Hello "},
        {"type": "image_url"},
        {"type": "text", "text": "!"},
    ]
    out = with_tools([{"role": "user", "content": parts}], [WEATHER])
    assert out[1]["content"] == "Hello !"


def test_one_call_is_parsed_into_the_openai_format() -> None:
    text = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    content, calls = parse_tool_calls(text)
    assert content is None
    assert calls == [call("get_weather", '{"city": "Paris"}')]


def test_text_around_calls_is_the_content_and_ids_follow_the_position() -> None:
    text = (
        "Let me check.\n"
        '<tool_call>{"name": "a", "arguments": {}}</tool_call>\n'
        '<tool_call>{"name": "b", "arguments": {"x": 1}}</tool_call> Done.'
    )
    content, calls = parse_tool_calls(text)
    assert content == "Let me check.\n\n Done."
    assert [c["id"] for c in calls] == ["call_0", "call_1"]
    assert [c["function"]["name"] for c in calls] == ["a", "b"]
    assert calls[1]["function"]["arguments"] == '{"x": 1}'


def test_a_list_of_calls_in_one_tag_gives_several_calls() -> None:
    text = '<tool_call>[{"name": "a", "arguments": {"k": "v"}}, {"name": "b"}]</tool_call>'
    _, calls = parse_tool_calls(text)
    assert [(c["function"]["name"], c["function"]["arguments"]) for c in calls] == [
        ("a", '{"k": "v"}'),
        ("b", "{}"),
    ]


def test_malformed_json_still_gives_a_call_with_the_raw_arguments() -> None:
    text = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}\n</tool_call>'
    content, calls = parse_tool_calls(text)
    assert content is None
    assert calls[0]["function"]["name"] == "get_weather"
    assert calls[0]["function"]["arguments"] == (
        '{"name": "get_weather", "arguments": {"city": "Paris"}'
    )
    _, nameless = parse_tool_calls("<tool_call>not json at all</tool_call>")
    assert nameless == [call("", "not json at all")]


def test_arguments_given_as_a_string_are_kept_and_an_unclosed_call_is_read() -> None:
    text = 'Sure <tool_call>{"name": "f", "arguments": "{\\"a\\": 1}"}'  # cut by max_tokens
    content, calls = parse_tool_calls(text)
    assert content == "Sure"
    assert calls == [call("f", '{"a": 1}')]


def test_text_without_calls_is_left_alone() -> None:
    assert parse_tool_calls("Paris is sunny.") == ("Paris is sunny.", [])
    assert parse_tool_calls("") == (None, [])
    assert tool_answer("Paris is sunny.", "stop") == ("Paris is sunny.", None, "stop")


def test_an_answer_with_a_call_finishes_with_tool_calls() -> None:
    text = '<tool_call>{"name": "f", "arguments": {}}</tool_call>'
    assert tool_answer(text, "stop") == (None, [call("f", "{}")], "tool_calls")
    assert tool_answer(text, "stop", "none") == (text, None, "stop")


def test_render_then_parse_round_trips_a_call() -> None:
    original = call("get_weather", '{"city": "Paris"}')
    rendered = with_tools([{"role": "assistant", "tool_calls": [original]}], None)
    _, parsed = parse_tool_calls(rendered[0]["content"])
    assert parsed == [original]
