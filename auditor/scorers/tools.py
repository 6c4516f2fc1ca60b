"""Tool calls: whether an answer calls a tool, and whether its calls are well-formed.

For every case whose params offer `tools`, as the Kimi K2 and MiniMax vendor verifiers
measure providers:

- `tool_called` (1/0): the answer has at least one tool call;
- `tool_name_known` (1/0, only when a call was made): every call names an offered function;
- `tool_args_json` (1/0, only when a call was made): every call's `arguments` are a JSON
  object, whatever they hold;
- `tool_args_valid` (1/0, only when a call was made): every call names an offered function
  and its `arguments` are a JSON object that validates against that function's
  `parameters` JSON Schema (a function without `parameters` takes any object).

A host whose tool parser is off sends the model's call text as content (`tool_called` 0 where
the reference calls); one that mangles arguments fails `tool_args_valid`. The detail of each
score names the calls and the first problem found.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema

from auditor.records import CompletionResponse, ProbeCase, ScoreRecord
from auditor.scorers.base import Scorer, scorers


def offered_functions(tools: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Function name -> its parameters schema, for the `function` tools offered."""
    out: dict[str, dict[str, Any]] = {}
    for tool in tools:
        function = tool.get("function") or {}
        if tool.get("type", "function") == "function" and function.get("name"):
            out[str(function["name"])] = function.get("parameters") or {"type": "object"}
    return out


def arguments_object(call: dict[str, Any]) -> dict[str, Any] | None:
    """The call's arguments as a JSON object, or None if they are not one."""
    arguments = (call.get("function") or {}).get("arguments")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except (ValueError, RecursionError):
            return None
    return arguments if isinstance(arguments, dict) else None


def call_problem(call: dict[str, Any], offered: dict[str, dict[str, Any]]) -> str | None:
    """Why `call` is not a valid call of an offered function, or None if it is."""
    function = call.get("function") or {}
    name = function.get("name")
    if name not in offered:
        return f"unknown function {name!r}"
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError as exc:
            return f"{name}: arguments are not JSON ({exc.msg})"
        except ValueError as exc:  # valid JSON that Python refuses (a number of 5000 digits)
            return f"{name}: arguments are not JSON ({exc})"
        except RecursionError:
            return f"{name}: arguments are not JSON (nested too deeply)"
    if not isinstance(arguments, dict):
        return f"{name}: arguments are not a JSON object"
    schema = offered[name]
    try:
        validator = jsonschema.validators.validator_for(schema)(schema)
        error = jsonschema.exceptions.best_match(validator.iter_errors(arguments))
    except jsonschema.exceptions.SchemaError as exc:
        return f"{name}: the offered schema is invalid ({exc.message})"
    except RecursionError:
        return f"{name}: arguments nested too deeply to validate"
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "arguments"
        return f"{name}: {where}: {error.message}"
    return None


@scorers.register("tools")
class ToolScorer(Scorer):
    name = "tools"

    def score(self, case: ProbeCase, response: CompletionResponse) -> list[ScoreRecord]:
        tools = case.params.tools
        if not response.ok or not tools:
            return []
        calls = response.tool_calls or []
        names = [(c.get("function") or {}).get("name") for c in calls]
        records = [self._record("tool_called", 1.0 if calls else 0.0, {"calls": names})]
        if not calls:
            return records
        offered = offered_functions(tools)
        problems = [p for c in calls if (p := call_problem(c, offered)) is not None]
        known = all(n in offered for n in names)
        objects = all(arguments_object(c) is not None for c in calls)
        detail = {"calls": names, "problem": problems[0] if problems else None}
        records += [
            self._record("tool_name_known", 1.0 if known else 0.0, {"calls": names}),
            self._record("tool_args_json", 1.0 if objects else 0.0, {"calls": names}),
            self._record("tool_args_valid", 0.0 if problems else 1.0, detail, not problems),
        ]
        return records
