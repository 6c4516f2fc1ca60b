"""Request parameters, honoured, rejected or silently ignored: the capability table, and a
test for every parameter a provider ignores.

The `params` suite's cases each test one parameter (`metadata.capability`). A *unit* is one
piece of evidence about it:

- per answer, for what one answer shows (`response_format.json_object`,
  `response_format.json_schema`, `stop`, `n`, `logprobs`: the `parameters` scorer's
  `param_honoured`);
- per case for `seed`: its samples (the same request, the same seed, temperature > 0) are
  the same answer, or not;
- per pair for `presence_penalty`: the answer with the penalty differs from the same greedy
  request's without it (`metadata.pair`, `metadata.penalized`), judged only on the pairs
  where the reference's two answers differ (the penalty changes what the weights say).

A parameter is `rejected` when the provider answered none of its requests and refused some
with a 4xx (the message kept), `honoured` when every unit honours it, `ignored` when some do
not, `unknown` with no unit. It is judged `against_reference` where the reference was asked
too, else from the provider's `own_behaviour`.

- `capability:<parameter>`: the units that show it ignored, against the tolerated quirk rate
  (exact binomial, one-sided), for every parameter the reference does not itself ignore or
  reject; its note says which units. Effect: observed minus tolerated rate.
"""

from __future__ import annotations

from collections import defaultdict

from auditor.comparisons.base import (
    TOLERATED_RATE,
    Comparator,
    Comparison,
    ComparisonInput,
    Scope,
    comparators,
    result_of,
)
from auditor.comparisons.observation import Observation
from auditor.comparisons.rules import Rule, register
from auditor.records import Capability, CapabilityStatus, ErrorClass
from auditor.scorers.parameters import CAPABILITY
from auditor.stats import excess_rate_test

#: Parameters a host ignoring changes how answers are sampled (`sampling_params`); the
#: others name the parameter under `other`.
SAMPLING = ("seed", "presence_penalty", "frequency_penalty")
METRIC = "capability_ignored"


def parameter_of(o: Observation) -> str | None:
    value = (o.case.get("metadata") or {}).get(CAPABILITY)
    return value if isinstance(value, str) else None


def _by_parameter(observations: list[Observation]) -> dict[str, list[Observation]]:
    out: dict[str, list[Observation]] = defaultdict(list)
    for o in observations:
        if (parameter := parameter_of(o)) is not None:
            out[parameter].append(o)
    return out


def _seed_units(observations: list[Observation]) -> list[bool]:
    """Per seeded case answered at least twice: all its answers the same."""
    texts: dict[str, list[str | None]] = defaultdict(list)
    for o in observations:
        if o.ok:
            texts[o.probe_hash].append(o.text)
    return [len(set(t)) == 1 for t in texts.values() if len(t) >= 2]


def _pairs(observations: list[Observation]) -> dict[str, dict[bool, str | None]]:
    pairs: dict[str, dict[bool, str | None]] = defaultdict(dict)
    for o in observations:
        metadata = o.case.get("metadata") or {}
        if o.ok and "pair" in metadata:
            pairs[str(metadata["pair"])][bool(metadata.get("penalized"))] = o.text
    return {k: v for k, v in pairs.items() if len(v) == 2}


def units(
    parameter: str, observations: list[Observation], reference: list[Observation] | None = None
) -> list[bool]:
    """The evidence about `parameter` in `observations` (True: honoured), as the module
    docstring says; `reference`: the reference's answers, which pick the penalty pairs."""
    if parameter == "seed":
        return _seed_units(observations)
    if parameter in ("presence_penalty", "frequency_penalty"):
        mine = _pairs(observations)
        theirs = _pairs(reference) if reference is not None else mine
        telling = [k for k, pair in theirs.items() if pair[True] != pair[False]]
        return [mine[k][True] != mine[k][False] for k in telling if k in mine]
    return [
        value == 1
        for o in observations
        if o.ok and (value := o.scores.get("param_honoured")) is not None
    ]


def _rejection(observations: list[Observation]) -> str | None:
    """The 4xx message of a parameter none of whose requests was answered."""
    if any(o.ok for o in observations):
        return None
    refused = [o for o in observations if o.error_class == ErrorClass.CLIENT_ERROR]
    return (refused[0].error_message or "refused") if refused else None


def _status(found: list[bool], rejected: str | None) -> CapabilityStatus:
    if rejected is not None:
        return "rejected"
    if not found:
        return "unknown"
    return "honoured" if all(found) else "ignored"


def capability_table(
    reference: list[Observation], provider: list[Observation]
) -> list[Capability] | None:
    """The provider's capability table (None: the round probed no parameter)."""
    mine, theirs = _by_parameter(provider), _by_parameter(reference)
    if not mine:
        return None
    table = []
    for parameter in sorted(mine):
        asked = mine[parameter]
        rejected = _rejection(asked)
        found = units(parameter, asked, theirs.get(parameter))
        ref_status = None
        if parameter in theirs:
            ref_units = units(parameter, theirs[parameter], theirs[parameter])
            ref_status = _status(ref_units, _rejection(theirs[parameter]))
        status = _status(found, rejected)
        note = rejected or (
            f"{found.count(False)} of {len(found)} {_unit(parameter)} show it ignored"
            if status == "ignored"
            else ""
        )
        table.append(
            Capability(
                parameter=parameter,
                status=status,
                judged="against_reference" if ref_status is not None else "own_behaviour",
                reference=ref_status,
                answers=len(found),
                honoured=found.count(True),
                note=note,
            )
        )
    return table


def _unit(parameter: str) -> str:
    if parameter == "seed":
        return "seeded requests repeated"
    if parameter in ("presence_penalty", "frequency_penalty"):
        return "pairs with and without it"
    return "answers"


def capability_tests(reference: list[Observation], provider: list[Observation]) -> list[Comparison]:
    table = capability_table(reference, provider) or []
    out = []
    for row in table:
        if row.answers == 0 or row.reference in ("ignored", "rejected"):
            continue
        outcome = excess_rate_test(row.answers - row.honoured, row.answers, TOLERATED_RATE)
        result = result_of(f"capability:{row.parameter}", outcome)
        note = f"{row.parameter} ignored: {row.note}" if row.status == "ignored" else None
        metric = f"{METRIC}:{row.parameter}"
        out.append(Comparison(result.model_copy(update={"note": note}), metric, Scope.ALL))
    return out


@comparators.register("capabilities")
class CapabilityComparator(Comparator):
    def compare(self, data: ComparisonInput) -> list[Comparison]:
        return capability_tests(data.reference, data.provider)


PARAMETERS = (
    "response_format.json_object",
    "response_format.json_schema",
    "stop",
    "n",
    "logprobs",
    *SAMPLING,
)
register(
    Rule(
        name="sampling_params.parameter_ignored",
        metric=tuple(f"{METRIC}:{p}" for p in SAMPLING),
        direction="up",
        kind="sampling_params",
        weight=0.9,
        summary="a sampling parameter is silently ignored: {note}",
    ),
    Rule(
        name="other.parameter_ignored",
        metric=tuple(f"{METRIC}:{p}" for p in PARAMETERS if p not in SAMPLING),
        direction="up",
        kind="other",
        weight=0.9,
        summary="a request parameter is silently ignored: {note}",
    ),
)
