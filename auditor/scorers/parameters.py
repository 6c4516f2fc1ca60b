"""Request parameters a host may drop silently: did this answer honour the one its probe
tests (`metadata.capability` of the case, the `params` suite)?

- `param_honoured`: 1.0 if the answer shows the parameter honoured, 0.0 if it shows it
  ignored; None where one answer cannot tell (`seed`, `presence_penalty`: judged from
  pairs of answers, `auditor.comparisons.capabilities`) or the case tests none.
  - `response_format.json_object`: the whole answer is a JSON object (a constrained answer
    is nothing else: no fence, no prose);
  - `response_format.json_schema`: it is JSON that validates against the request's schema;
  - `stop`: none of the request's stop strings is in the answer;
  - `n`: the response holds as many choices as the request asked for;
  - `logprobs`: the answer came with logprobs.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema

from auditor.records import CompletionResponse, ProbeCase, ScoreRecord
from auditor.scorers.base import Scorer, scorers

CAPABILITY = "capability"  # the case metadata key naming the parameter it tests


def _json_object(text: str | None) -> dict[str, Any] | None:
    try:
        value = json.loads((text or "").strip())
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _schema_of(body: dict[str, Any]) -> dict[str, Any] | None:
    format_ = body.get("response_format")
    if not isinstance(format_, dict):
        return None
    schema = (format_.get("json_schema") or {}).get("schema")
    return schema if isinstance(schema, dict) else None


def _choices(raw: dict[str, Any] | None) -> int:
    """How many choices a response body holds (a stream's: its distinct choice indices)."""
    if not raw:
        return 0
    if isinstance(raw.get("chunks"), list):
        return len(
            {c.get("index") for chunk in raw["chunks"] if isinstance(chunk, dict)
             for c in chunk.get("choices") or [] if isinstance(c, dict)}
        )  # fmt: skip
    choices = raw.get("choices")
    return len(choices) if isinstance(choices, list) else 0


def honoured(parameter: str, response: CompletionResponse) -> tuple[bool | None, str]:
    """Whether the answer honoured `parameter`, and why (None: one answer cannot tell)."""
    body = response.raw_request
    text = response.text
    if parameter == "response_format.json_object":
        ok = _json_object(text) is not None
        return ok, "a JSON object" if ok else "not a JSON object"
    if parameter == "response_format.json_schema":
        value, schema = _json_object(text), _schema_of(body)
        if value is None or schema is None:
            return False, "not a JSON object" if schema else "no schema was sent"
        try:
            jsonschema.validate(value, schema)
        except jsonschema.ValidationError as exc:
            return False, f"invalid for the schema: {exc.message[:120]}"
        except (jsonschema.SchemaError, RecursionError):
            return None, "the schema sent is not valid"
        return True, "valid for the schema"
    if parameter == "stop":
        stops = body.get("stop")
        stops = [stops] if isinstance(stops, str) else stops or []
        found = [s for s in stops if isinstance(s, str) and s and s in (text or "")]
        return not found, f"holds the stop string {found[0]!r}" if found else "no stop string"
    if parameter == "n":
        asked, got = body.get("n") or 1, _choices(response.raw_response)
        return got == asked, f"{got} of {asked} choices"
    if parameter == "logprobs":
        ok = bool(response.logprobs)
        return ok, "logprobs returned" if ok else "no logprobs"
    return None, "judged from pairs of answers"


@scorers.register("parameters")
class ParameterScorer(Scorer):
    name = "parameters"

    def score(self, case: ProbeCase, response: CompletionResponse) -> list[ScoreRecord]:
        parameter = case.metadata.get(CAPABILITY)
        if not response.ok or not isinstance(parameter, str):
            return []
        ok, why = honoured(parameter, response)
        value = None if ok is None else float(ok)
        return [self._record("param_honoured", value, {"parameter": parameter, "why": why})]
