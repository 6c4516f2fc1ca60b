"""Rejected tests -> ranked diagnoses: the evaluator of the diagnosis rules.

The rules are data, declared beside the comparisons whose metrics they read
(`auditor.comparisons.rules`). Here they are evaluated: every rule that matches a rejected
test (and whose conditions hold) is a candidate; a candidate fires unless one of the rules
or kinds it is `suppressed_by` fires (resolved in dependency order, so the result does not
depend on the order rules were registered in); the fallback rule fires when nothing else
does. Each kind keeps its most confident reading; the strongest kinds come first.
"""

from __future__ import annotations

from collections.abc import Iterable
from graphlib import CycleError, TopologicalSorter

from auditor.comparisons import Comparison
from auditor.comparisons.rules import Readings, Rejection, Rule, kinds, register, rules
from auditor.records import Diagnosis

FALLBACK = Rule(
    name="model_variant.anything_else",
    metric=(),
    fallback=True,
    kind="model_variant",
    weight=0.6,
    summary="behaves unlike the reference weights: {name} effect {effect:+.2f}",
)
register(FALLBACK)


def diagnose(
    rejected: list[Rejection],
    comparisons: list[Comparison] | None = None,
    candidates: Iterable[Rule] | None = None,
) -> list[Diagnosis]:
    """Name what is wrong from the tests that rejected and the figures beside them (every
    registered rule unless `candidates` are given); strongest first."""
    readings = Readings(rejected, comparisons or [])
    declared = list(rules.values() if candidates is None else candidates)
    matched = {r.name: m for r in declared if not r.fallback and (m := r.match(readings))}
    by_name = {r.name: r for r in declared}
    fired: dict[str, Rejection] = {}
    for name in _order(declared):
        if name in matched and not any(
            _fires(s, fired, by_name) for s in by_name[name].suppressed_by
        ):
            fired[name] = matched[name]
    if not fired and rejected:
        for rule in (r for r in declared if r.fallback):
            if match := rule.match(readings):
                fired[rule.name] = match
    best: dict[str, tuple[float, float, str, Diagnosis]] = {}
    for name, rejection in fired.items():
        rule = by_name[name]
        confidence = round(rule.weight * rejection.strength, 3)
        key = (-confidence, rejection.adjusted_p, name)
        diagnosis = Diagnosis(
            kind=rule.kind, confidence=confidence, summary=rule.describe(rejection, readings)
        )
        if rule.kind not in best or key < best[rule.kind][:3]:
            best[rule.kind] = (*key, diagnosis)
    return [entry[3] for entry in sorted(best.values(), key=lambda e: e[:3])]


def _fires(suppressor: str, fired: dict[str, Rejection], by_name: dict[str, Rule]) -> bool:
    if suppressor in kinds.names():
        return any(by_name[n].kind == suppressor for n in fired)
    return suppressor in fired


def _order(declared: list[Rule]) -> list[str]:
    """Rule names, each after every rule it may yield to (kinds expand to their rules)."""
    known = set(kinds.names())
    by_kind: dict[str, list[str]] = {}
    for r in declared:
        if r.kind not in known:
            raise ValueError(f"rule {r.name}: unknown diagnosis kind {r.kind!r}")
        by_kind.setdefault(r.kind, []).append(r.name)
    names = {r.name for r in declared}
    graph: dict[str, set[str]] = {}
    for r in declared:
        before: set[str] = set()
        for s in r.suppressed_by:
            if s in known:
                before.update(n for n in by_kind.get(s, []) if n != r.name)
            elif s in names:
                before.add(s)
            else:
                raise ValueError(f"rule {r.name}: suppressed_by names no rule or kind: {s!r}")
        graph[r.name] = before
    try:
        return list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        raise ValueError(f"diagnosis rules suppress each other in a cycle: {exc.args[1]}") from None
