"""Tools offered to a chat model that has no native tool template, in the Hermes/Qwen style.

The reference engine and the fleet's model run a GGUF whose chat template knows only system,
user and assistant turns. To offer it tools, the request is rewritten into such turns before
the template sees it, the way Hermes and Qwen 2.5 templates do it natively:

- the tools' JSON goes into the system message (a new one first, or after the caller's
  system text), between `<tools></tools>` tags, with the instruction to answer a needed call
  as `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`;
- an assistant turn's `tool_calls` become such tags after its text;
- `tool` turns (tool results) become one user turn, `Tool result: <content>` per result,
  consecutive results in the same turn (as Qwen 2.5 groups them). Qwen and Hermes wrap each
  result in `<tool_response>` tags instead; with those, SmolLM2-135M-Instruct answered a
  new question with a made-up `<tool_response>` (the latest tagged text it had seen) in 4
  of 8 probes measured and called a tool in none; with plain text it called in 3 of 8.

The generated text is then parsed back into OpenAI tool calls (`parse_tool_calls`): every
`<tool_call>` block (an unclosed last one too, as vLLM's Hermes parser reads it) gives one
call, or several when it holds a JSON list of calls; JSON that does not parse still gives a
call, with the raw text as its `arguments`, so that a scorer can count it invalid. Call ids
are `call_<n>` by position: the reference and an honest provider give identical records.

JSON written into the prompt has sorted keys: an HTTP hop may reorder a tool's keys, and the
prompt must not depend on it. `tool_choice: "none"` offers no tools and parses no calls;
`"required"` and a named function add one sentence to the instruction.
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

TOOLS_HEADER = (
    "# Tools\n\n"
    "You may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
TOOLS_FOOTER = (
    "</tools>\n\n"
    "For each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n"
    '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>\n\n'
    "If no function is needed, answer the user directly."
)
TOOL_RESULT = "Tool result: {content}"
REQUIRED = "You must call at least one function."
NAMED = "You must call the function {name}."

_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.S)
_NAME = re.compile(r'"name"\s*:\s*"((?:[^"\\]|\\.)*)"')


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _text(content: Any) -> str:
    """A message's text: a string, or the text parts of a list of content parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(str(p.get("text", "")) for p in content if p.get("type") == "text")


def offers_tools(tool_choice: str | dict[str, Any] | None, tools: list[Any] | None) -> bool:
    """Whether the model is offered `tools` (and its calls parsed): not with tool_choice none."""
    return bool(tools) and tool_choice != "none"


def needs_rendering(
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    tool_choice: str | dict[str, Any] | None = None,
) -> bool:
    """Whether `with_tools` changes anything: tools offered, or tool turns in the history."""
    return offers_tools(tool_choice, tools) or any(
        m.get("role") == "tool" or m.get("tool_calls") for m in messages
    )


def tools_instruction(
    tools: list[dict[str, Any]], tool_choice: str | dict[str, Any] | None = None
) -> str:
    """The system text that offers `tools`."""
    lines = [TOOLS_HEADER, *(_json(t) for t in tools), TOOLS_FOOTER]
    text = "\n".join(lines)
    if tool_choice == "required":
        text += "\n" + REQUIRED
    elif isinstance(tool_choice, dict):
        name = (tool_choice.get("function") or {}).get("name")
        if name:
            text += "\n" + NAMED.format(name=name)
    return text


def _call_text(call: dict[str, Any]) -> str:
    function = call.get("function") or {}
    arguments: Any = function.get("arguments")
    if isinstance(arguments, str):
        with contextlib.suppress(ValueError):  # else the raw text, as a JSON string
            arguments = json.loads(arguments)
    body = {"name": function.get("name", ""), "arguments": arguments}
    return f"<tool_call>\n{_json(body)}\n</tool_call>"


def with_tools(
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    tool_choice: str | dict[str, Any] | None = None,
) -> list[dict[str, str]]:
    """`messages` as plain system/user/assistant turns, with `tools` offered in the system
    message (see the module docstring). The result has only `role` and `content` keys."""
    out: list[dict[str, str]] = []
    results: list[str] = []

    def flush_results() -> None:
        if results:
            out.append({"role": "user", "content": "\n".join(results)})
            results.clear()

    for m in messages:
        role, text = m.get("role", "user"), _text(m.get("content"))
        if role == "tool":
            results.append(TOOL_RESULT.format(content=text))
            continue
        flush_results()
        if role == "assistant" and m.get("tool_calls"):
            parts = [text] if text else []
            parts += [_call_text(c) for c in m["tool_calls"]]
            text = "\n".join(parts)
        out.append({"role": role, "content": text})
    flush_results()
    if offers_tools(tool_choice, tools):
        assert tools is not None
        offer = tools_instruction(tools, tool_choice)
        if out and out[0]["role"] == "system":
            first = out[0]["content"]
            out[0] = {"role": "system", "content": f"{first}\n\n{offer}" if first else offer}
        else:
            out.insert(0, {"role": "system", "content": offer})
    return out


def _calls_in(block: str) -> list[tuple[str, str]]:
    """(name, arguments as a JSON string) of each call written in one tag's text."""
    raw = block.strip()
    try:
        parsed = json.loads(raw)
    except ValueError:
        found = _NAME.search(raw)
        return [(found[1] if found else "", raw)]
    items = parsed if isinstance(parsed, list) else [parsed]
    calls = []
    for item in items:
        if not isinstance(item, dict):
            calls.append(("", _json(item)))
            continue
        arguments = item.get("arguments", item.get("parameters", {}))
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments, ensure_ascii=False)
        calls.append((str(item.get("name", "")), arguments))
    return calls


def parse_tool_calls(text: str | None) -> tuple[str | None, list[dict[str, Any]]]:
    """(content, OpenAI tool calls) of a generated answer: the text outside the
    `<tool_call>` tags (stripped, None when empty) and one call per call written inside."""
    text = text or ""
    calls: list[dict[str, Any]] = []
    for block in _BLOCK.finditer(text):
        for name, arguments in _calls_in(block[1]):
            calls.append(
                {
                    "id": f"call_{len(calls)}",
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }
            )
    if not calls:
        return (text or None), []
    content = _BLOCK.sub("", text).strip()
    return (content or None), calls


def tool_answer(
    text: str | None, finish_reason: str | None, tool_choice: str | dict[str, Any] | None = None
) -> tuple[str | None, list[dict[str, Any]] | None, str | None]:
    """(content, tool calls or None, finish_reason) of an answer to a request with tools:
    finish_reason `tool_calls` when a call was made, as OpenAI-compatible servers say."""
    if tool_choice == "none":
        return text, None, finish_reason
    content, calls = parse_tool_calls(text)
    if not calls:
        return text, None, finish_reason
    return content, calls, "tool_calls"
