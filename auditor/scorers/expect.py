"""Did the answer match the probe's `expect`? (exact, regex, number or json_schema)

Matching is deliberately forgiving about presentation (case, a trailing period, quotes,
thousands separators) so that it measures the task, while `only_number` separately
measures whether the model followed "answer with one number". Failures to answer at all
(`ok=False`) are not scored: errors are never behaviour.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import jsonschema
from jsonschema.exceptions import best_match

from auditor.records import CompletionResponse, Expect, ProbeCase, ScoreRecord
from auditor.scorers.base import Scorer, scorers

DETAIL_CHARS = 200

_DIGITS = r"(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?"
# A sign counts only at the start of a word, so "5-3" reads as 5 and "x-3" as 3; a number
# never starts inside another one, and ".5" reads as 0.5.
NUMBER = re.compile(rf"(?:(?<![\w.])([-+\u2212]))?(?<![0-9.])({_DIGITS}|\.[0-9]+)(?![0-9])")
ONLY_NUMBER = re.compile(rf"[-+\u2212]?(?:{_DIGITS}|\.[0-9]+)\.?")
_FENCE = re.compile(r"```[ \t]*(?:json)?[ \t]*\n?(.*?)```", re.DOTALL | re.IGNORECASE)
_QUOTES = {'"': '"', "'": "'", "`": "`", "\u201c": "\u201d", "\u2018": "\u2019", "\u00ab": "\u00bb"}


def first_number(text: str) -> float | None:
    """The answer's number: the first one after the last "=" if there is one (so that
    "17 + 25 = 42" reads as 42), else the first one. Handles "-3.5", "1,000", "42." and
    words around it. None when there is no number, or it is too large to be a finite float.
    """
    _, equals, result = text.rpartition("=")
    match = NUMBER.search(result) if equals else None
    match = match or NUMBER.search(text)
    if match is None:
        return None
    sign, digits = match.group(1), match.group(2)
    value = float(digits.replace(",", ""))
    if sign in ("-", "\u2212"):
        value = -value
    return value if math.isfinite(value) else None


def is_only_number(text: str) -> bool:
    """True if the stripped answer is one number, optionally followed by a period."""
    return ONLY_NUMBER.fullmatch(text.strip()) is not None


def normalise_exact(text: str, case_sensitive: bool) -> str:
    """Collapse whitespace; peel trailing periods and matching surrounding quotes."""
    out = " ".join(text.split())
    previous = None
    while out != previous:
        previous = out
        out = out.strip().removesuffix(".").strip()
        if len(out) >= 2 and _QUOTES.get(out[0]) == out[-1]:
            out = out[1:-1]
    return out if case_sensitive else out.casefold()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    """A JSON number as a float, refusing one too large to be finite (not storable as JSON)."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def parse_json(text: str) -> tuple[Any, bool, str | None]:
    """(value, fenced, error): the whole answer as JSON, else a ```json fenced block."""
    error = None
    for fenced, candidate in ((False, text), *((True, m.group(1)) for m in _FENCE.finditer(text))):
        try:
            value = json.loads(
                candidate, parse_constant=_reject_constant, parse_float=_finite_float
            )
            return value, fenced, None
        except (ValueError, RecursionError) as exc:
            error = error or f"not JSON: {exc}"[:DETAIL_CHARS]
    return None, False, error or "no JSON found"


@scorers.register("expect")
class ExpectScorer(Scorer):
    name = "expect"

    def score(self, case: ProbeCase, response: CompletionResponse) -> list[ScoreRecord]:
        expect = case.expect
        if expect is None or not response.ok:
            return []
        text = response.text or ""
        passed, detail = getattr(self, f"_{expect.kind}")(expect, text)
        records = [self._verdict("expect_pass", passed, {"kind": expect.kind, **detail})]
        if expect.kind == "number":
            records.append(self._verdict("only_number", is_only_number(text), {"kind": "number"}))
        return records

    def _verdict(self, metric: str, passed: bool | None, detail: dict[str, Any]) -> ScoreRecord:
        return self._record(metric, None if passed is None else float(passed), detail, passed)

    @staticmethod
    def _number(expect: Expect, text: str) -> tuple[bool, dict[str, Any]]:
        assert expect.number is not None
        value = first_number(text)
        # A relative epsilon so that 0.1 + 0.2 style float noise never fails a match.
        slack = expect.tolerance + 1e-9 * max(1.0, abs(expect.number))
        passed = value is not None and abs(value - expect.number) <= slack
        return passed, {"extracted": value, "expected": expect.number}

    @staticmethod
    def _exact(expect: Expect, text: str) -> tuple[bool, dict[str, Any]]:
        assert expect.exact is not None
        got = normalise_exact(text, expect.case_sensitive)
        passed = got == normalise_exact(expect.exact, expect.case_sensitive)
        return passed, {"extracted": got[:DETAIL_CHARS]}

    @staticmethod
    def _regex(expect: Expect, text: str) -> tuple[bool | None, dict[str, Any]]:
        assert expect.regex is not None
        flags = 0 if expect.case_sensitive else re.IGNORECASE
        try:
            match = re.search(expect.regex, text, flags)
        except re.error as exc:
            return None, {"extracted": None, "error": f"invalid regex: {exc}"}
        return match is not None, {"extracted": match.group(0)[:DETAIL_CHARS] if match else None}

    @staticmethod
    def _json_schema(expect: Expect, text: str) -> tuple[bool | None, dict[str, Any]]:
        assert expect.json_schema is not None
        value, fenced, error = parse_json(text)
        detail: dict[str, Any] = {"extracted": value, "fenced": fenced}
        if error is not None:
            return False, {**detail, "error": error}
        try:
            validator = jsonschema.validators.validator_for(expect.json_schema)(expect.json_schema)
            problem = best_match(validator.iter_errors(value))
        except (jsonschema.SchemaError, RecursionError) as exc:
            return None, {**detail, "error": f"invalid schema: {exc}"[:DETAIL_CHARS]}
        if problem is not None:
            return False, {**detail, "error": problem.message[:DETAIL_CHARS]}
        return True, detail
