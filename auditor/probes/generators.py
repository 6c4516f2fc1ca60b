"""Probe generators: one case in a suite file that expands into several cases.

A generator receives the case's template (every key of the case except `generator`, with
the suite defaults applied) and its `generator.params`, and returns raw case dicts. Each
dict's `id` is a suffix: the loader names the case `<template id>.<suffix>`, merges the
dict over the template (params key by key, signals and tags as a union, everything else
replaced) and validates the result like any hand-written case.

Third-party generators register exactly like the built-ins below::

    @generators.register("my_generator")
    class MyGenerator(ProbeGenerator):
        def generate(self, template, params): ...

Generators report bad params by raising `pydantic.ValidationError` (the location is read
as a path under `generator.params`) or `GeneratorError` (optionally naming a param key).

A generator whose lengths follow the model (the context ladder's `window`) names those params
in `profile_params`, each with the `ModelProfile` field it comes from. A case that leaves one
out is expanded per model, when a round knows the model (`Suite.cases_for`); until then
`check` validates the params it has, so that a bad value is still an error at load time.
"""

from __future__ import annotations

import random
import string
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from auditor.plugins import Registry
from auditor.probes import filler
from auditor.probes.arith import ExpressionError, evaluate, names_in, parse_expression


class GeneratorError(ValueError):
    """Bad generator params; `key` names the param at fault when there is one."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class ProbeGenerator(ABC):
    #: Params a case may leave out, each then filled per model from a field of the model's
    #: profile: param name -> `ModelProfile` field (e.g. `{"window": "context_window"}`).
    profile_params: ClassVar[Mapping[str, str]] = {}
    #: Whether the generator writes each case's messages (the case then has no prompt or
    #: messages of its own), or keeps the ones its case has.
    writes_messages: ClassVar[bool] = True

    @abstractmethod
    def generate(self, template: dict[str, Any], params: dict[str, Any]) -> list[dict[str, Any]]:
        """Return raw case dicts; each `id` is the suffix appended to the template's id."""

    def check(self, params: dict[str, Any]) -> None:
        """Validate params that leave out some `profile_params`, raising as `generate` does.
        By default nothing is checked before the per-model expansion."""
        return None


generators: Registry[type[ProbeGenerator]] = Registry("probe generator")


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NeedleParams(_Params):
    lengths: list[Annotated[int, Field(ge=64, le=32768)]] = Field(min_length=1)
    depths: list[Annotated[float, Field(ge=0, le=1)]] = Field(min_length=1)
    seed: int = 0


CHARS_PER_TOKEN = 4
_COLOURS = ("blue", "red", "green", "yellow", "silver", "orange", "purple", "white")
_PREFIX = "Below is a long text. Read it carefully, then answer the question at the end.\n\n"


@generators.register("needle")
class NeedleGenerator(ProbeGenerator):
    """Needle in a haystack: one case per (length, depth).

    `lengths` are approximate prompt sizes in tokens (about four characters each); the needle
    sentence sits at the sentence boundary nearest to each `depth` fraction of the text. A
    provider that silently truncates the context loses needles placed early in long prompts.
    """

    def generate(self, template: dict[str, Any], params: dict[str, Any]) -> list[dict[str, Any]]:
        p = NeedleParams.model_validate(params)
        out: list[dict[str, Any]] = []
        for length in p.lengths:
            for depth in p.depths:
                out.append(self._case(p.seed, length, depth))
        ids = [c["id"] for c in out]
        if len(set(ids)) != len(ids):
            raise GeneratorError("two (length, depth) pairs give the same case id", key="depths")
        return out

    @staticmethod
    def _case(seed: int, length: int, depth: float) -> dict[str, Any]:
        # A string seed is hashed with SHA-512 by `random`, so it is stable across runs.
        rng = random.Random(f"needle:{seed}:{length}:{depth!r}")
        colour = rng.choice(_COLOURS)
        code = rng.randint(1000, 9999)
        needle = f"The secret code of the {colour} door is {code}."
        question = f"What is the secret code of the {colour} door? Answer with the number only."
        suffix = f"\n\nQuestion: {question}"
        budget = length * CHARS_PER_TOKEN - len(_PREFIX) - len(suffix) - len(needle) - 1
        units = filler.with_needle(filler.filler_units(rng, max(budget, 0)), needle, depth)
        haystack = filler.join_units(units, rng)
        prompt = _PREFIX + haystack + suffix
        return {
            "id": f"len{length}.d{depth:.2f}",
            "prompt": prompt,
            "expect": {"regex": rf"\b{code}\b"},
            "signals": ["long_context"],
            "metadata": {
                "generator": "needle",
                "length": length,
                "depth": depth,
                "code": code,
                "prompt_chars": len(prompt),
                "needle_offset": haystack.index(needle) / max(len(haystack), 1),
            },
        }


class StreamTwinsParams(_Params):
    plain: int = Field(default=2, ge=2, le=20)
    streamed: int = Field(default=1, ge=1, le=20)


@generators.register("stream_twins")
class StreamTwinsGenerator(ProbeGenerator):
    """A case sent plain (`plain` samples, at least two: how much the provider's own repeats
    differ) and streamed (`streamed` samples, `stream: true`), both marked with
    `metadata.stream_pair` (the template's id): what streaming parity compares
    (`auditor.comparisons.streaming`)."""

    writes_messages = False

    def generate(self, template: dict[str, Any], params: dict[str, Any]) -> list[dict[str, Any]]:
        p = StreamTwinsParams.model_validate(params)
        pair = {"stream_pair": str(template["id"])}
        return [
            {"id": "plain", "samples": p.plain, "stream": False, "metadata": pair},
            {"id": "stream", "samples": p.streamed, "stream": True, "metadata": pair},
        ]


class PerturbedArithmeticParams(_Params):
    problem: str = Field(min_length=1)
    answer: str = Field(min_length=1)
    values: dict[str, int] = Field(min_length=1)
    twins: int = Field(default=1, ge=1, le=50)
    seed: int = 0
    low: int = 2
    high: int = 99

    @model_validator(mode="after")
    def _range(self) -> PerturbedArithmeticParams:
        if self.low > self.high:
            raise ValueError("low must not exceed high")
        return self


@generators.register("perturbed_arithmetic")
class PerturbedArithmeticGenerator(ProbeGenerator):
    """A word problem with its numbers, plus `twins` copies with other numbers.

    All cases share one `group` (the template's, else its id), so a later detector can ask
    whether a model solves the familiar original much better than its perturbed twins, the
    mark of a variant tuned on benchmark items. The answer is `answer` evaluated with + - *
    only; twins keep the sign of the original answer so that none turns negative.
    """

    MAX_TRIES = 2000

    def generate(self, template: dict[str, Any], params: dict[str, Any]) -> list[dict[str, Any]]:
        p = PerturbedArithmeticParams.model_validate(params)
        try:
            expr = parse_expression(p.answer)
        except ExpressionError as exc:
            raise GeneratorError(str(exc), key="answer") from None
        missing = names_in(expr) - p.values.keys()
        if missing:
            raise GeneratorError(f"names without a value: {', '.join(sorted(missing))}", "answer")
        fields = {name for _, name, _, _ in string.Formatter().parse(p.problem) if name}
        if fields - p.values.keys():
            missing_text = ", ".join(sorted(fields - p.values.keys()))
            raise GeneratorError(f"placeholders without a value: {missing_text}", key="problem")
        if not fields:
            raise GeneratorError("the problem has no {placeholders} to perturb", key="problem")

        group = template.get("group") or template.get("id")
        original = evaluate(expr, p.values)
        cases = [self._case("orig", p.problem, p.values, original, group, "original")]
        rng = random.Random(f"perturbed_arithmetic:{p.seed}:{p.problem}:{p.answer}")
        seen = {tuple(sorted(p.values.items()))}
        for n in range(1, p.twins + 1):
            for _ in range(self.MAX_TRIES):
                values = {
                    k: (rng.randint(p.low, p.high) if k in fields else v)
                    for k, v in p.values.items()
                }
                key = tuple(sorted(values.items()))
                result = evaluate(expr, values)
                if key not in seen and (result >= 0) == (original >= 0):
                    break
            else:
                raise GeneratorError(
                    f"cannot find {p.twins} distinct perturbations in [{p.low}, {p.high}]",
                    key="twins",
                )
            seen.add(key)
            cases.append(self._case(f"p{n}", p.problem, values, result, group, "perturbed"))
        return cases

    @staticmethod
    def _case(
        suffix: str, problem: str, values: dict[str, int], answer: int, group: Any, role: str
    ) -> dict[str, Any]:
        return {
            "id": suffix,
            "prompt": problem.format(**values),
            "expect": {"number": answer},
            "group": group,
            "signals": ["perturbation"],
            "metadata": {"generator": "perturbed_arithmetic", "role": role, "values": values},
        }
