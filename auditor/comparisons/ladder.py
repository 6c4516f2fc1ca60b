"""The provider's effective context window, read from its answers to a context ladder.

A context ladder (`auditor.probes.ladder`, cases whose metadata says generator
`context_ladder`) asks the same long-context tasks at growing fractions of the model's window.
Each rung becomes one `auditor.stats.ladder.RungResult`:

- `length`: the reference's count of the rung's prompts (the median over its cases of the
  reference's `prompt_tokens`; the case's `target_tokens` where the reference counted none);
- provider and reference passed/tried: the `expect_pass` scores of their answered requests,
  in all and task by task (the case's `metadata.task`): a rung of several tasks is tested
  task by task (`auditor.stats.ladder`);
- `refused`: the provider's refusals as too long (`context_length_exceeded`) of prompts the
  reference answered and the model's declared window holds (the reference's count of the
  prompt plus the request's `max_tokens`; no declared window: every one), as
  `refusals:context_length` counts them. A refusal of a longer request is the provider's
  right, and one of a prompt the reference refused too says nothing of the provider: both
  are counted with `errors`, the other errors, which say nothing about length;
- `billed_short`: provider answers billed more than `PROMPT_TOKEN_TOLERANCE` prompt tokens
  below the reference's count of the same probe (the host dropped part of the prompt); an
  answer without usage is not.

`auditor.stats.ladder.effective_window` reads them (its docstring defines a rung's match,
the effective window and its confirmed lower bound): where the window breaks by Holm's
step-down at the ladder's level across the k rungs it can judge, its lower bound at
`BOUND_ALPHA`, 0.05 (that needs no correction, `ladder_window`). The ladder's level is
`SHARE` of the verdict's (`ALPHA`, 0.04, without a sequential budget): the level the verdict
tests `ladder:breaks` at, so the window and the verdict always agree. The first failure stops
the window, so without a correction an honest provider would break somewhere on about 23% of
six-rung ladders at 0.05 (simulated in `auditor.stats.ladder`; 1 - 0.95^6 = 26% bounds it);
with it, on at most the level. Holm breaks an honest ladder exactly when Bonferroni (level /
k a rung) would, and once a rung has failed tests the rest at level / (k - 1), ...: a cut
failing the top rung and, less clearly, the one below is placed at the lower one.

Emitted, only for a provider with ladder answers:

- `ladder:effective_window` (a figure): the effective window in prompt tokens (0 below the
  ladder); n the rungs judged; the note: the window in words, the length the model declares,
  and every rung's verdict (`TestResult` has no structured field: the rungs are in the note).
  `not_available` when no rung could be judged.
- `ladder:lower_bound` (a figure): how far the match is confirmed (0: at no rung).
- `ladder:breaks` (a test): the smallest per-rung p-value (the one-sided Boschloo test of a
  lower pass rate, pooled and task by task, `auditor.stats.ladder`) times k, capped at 1
  (the smallest Holm-adjusted p-value); a rung refused
  or billed short counts as p 0 (direct evidence). It rejects at the ladder's level exactly
  when some rung fails. Effect: the effective window over the top rung judged, minus 1 (-1 below the
  ladder, negative whenever it breaks);
  statistic: the length where it breaks (None when it does not).

Rule `context_truncation.ladder_breaks` reads the test: its summary says where the window
breaks and why.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from auditor.comparisons.base import (
    Comparator,
    Comparison,
    ComparisonInput,
    Scope,
    comparators,
    figure,
)
from auditor.comparisons.metrics import PROMPT_TOKEN_TOLERANCE, ScoreMetric
from auditor.comparisons.observation import Observation
from auditor.comparisons.refusals import (
    answered_by_reference,
    fits_window,
    refused_as_too_long,
)
from auditor.comparisons.rules import Readings, Rejection, Rule, alpha_shares, register
from auditor.records import TestResult
from auditor.stats.ladder import (
    EffectiveWindow,
    RungResult,
    RungVerdict,
    TaskCounts,
    effective_window,
)
from auditor.stats.multiple import holm_adjust

GENERATOR = "context_ladder"
#: The share of the verdict's level set apart for `ladder:breaks` (`alpha_shares`): the
#: ladder suite's main question is not diluted among the round's other tests, which share
#: the rest.
SHARE = 0.8
#: The verdict's level without a sequential budget (`auditor.judging.verdict.ALPHA`).
VERDICT_ALPHA = 0.05
#: The one-sided level of the window's confirmed lower bound: a 95% confidence bound
#: whatever the verdict's level (a sequential budget's looks would otherwise leave 12
#: answers a rung confirming nothing).
BOUND_ALPHA = 0.05
#: The ladder-wide level, the one the verdict tests `ladder:breaks` at: the k rungs judged
#: are tested with Holm's step-down at `SHARE` times the verdict's level (this, or less with
#: a sequential budget's looks), so a window that breaks on the ladder is always a deviant
#: finding with its `context_truncation` diagnosis.
ALPHA = VERDICT_ALPHA * SHARE

#: What each task of the ladder asks, in words ("fails retrieval at 2,048 tokens").
TASK_WORDS = {
    "needle": "retrieval",
    "multikey": "retrieval",
    "variable_tracking": "variable tracking",
    "aggregation": "aggregation",
}


class LadderMetric(StrEnum):
    EFFECTIVE_WINDOW = "effective_window"  # the longest rung answered like the reference
    LOWER_BOUND = "effective_window_lower_bound"  # how far that is confirmed
    BREAKS = "ladder_breaks"  # some rung fails


def is_ladder(o: Observation) -> bool:
    return (o.case.get("metadata") or {}).get("generator") == GENERATOR


def _target(o: Observation) -> int | None:
    """A ladder case's rung, by the length it was built for (None: not a ladder case)."""
    target = (o.case.get("metadata") or {}).get("target_tokens")
    return int(target) if is_ladder(o) and target is not None else None


def _task(o: Observation) -> str | None:
    return (o.case.get("metadata") or {}).get("task")


@dataclass
class Rung:
    """One rung's observations, both sides, and what it makes of them."""

    provider: list[Observation] = field(default_factory=list)
    reference: list[Observation] = field(default_factory=list)

    def tasks(self) -> set[str]:
        return {t for o in self.provider if (t := _task(o)) is not None}

    def result(
        self, length: int, answered: dict[str, int | None], window: int | None
    ) -> RungResult:
        """The rung's `RungResult` (module docstring); `answered`: the probes the reference
        answered, with its count of their prompt (`answered_by_reference`)."""
        counts = {h: n for h, n in answered.items() if n is not None}
        counted = [
            o
            for o in self.provider
            if refused_as_too_long(o)
            and o.probe_hash in answered
            and fits_window(o, answered[o.probe_hash], window)
        ]
        billed_short = sum(
            o.ok
            and o.prompt_tokens is not None
            and o.probe_hash in counts
            and counts[o.probe_hash] - o.prompt_tokens > PROMPT_TOKEN_TOLERANCE
            for o in self.provider
        )
        return RungResult(
            length,
            *_passed_tried(self.provider),
            *_passed_tried(self.reference),
            refused=len(counted),
            errors=sum(not o.ok for o in self.provider) - len(counted),
            billed_short=billed_short,
            tasks=self.task_counts(),
        )

    def task_counts(self) -> tuple[TaskCounts, ...]:
        """Passed and tried task by task, both sides, over the tasks either side answered (a
        case without `metadata.task` under "")."""
        names = sorted({_task(o) or "" for o in (*self.provider, *self.reference)})
        return tuple(
            TaskCounts(
                task,
                *_passed_tried(o for o in self.provider if (_task(o) or "") == task),
                *_passed_tried(o for o in self.reference if (_task(o) or "") == task),
            )
            for task in names
        )

    def failing_tasks(self) -> set[str]:
        """The tasks where the provider passed less often than the reference (all of them
        when none did)."""
        worse = {
            t.task
            for t in self.task_counts()
            if t.task  # a case without a task names none
            and t.comparable
            and t.provider_passed * t.reference_tried < t.reference_passed * t.provider_tried
        }
        return worse or self.tasks()


def _passed_tried(obs: Iterable[Observation]) -> tuple[int, int]:
    """Answers scored against `expect` (errors are not), and how many of them passed."""
    scored = [v for o in obs if o.ok and (v := o.scores.get(ScoreMetric.EXPECT_PASS)) is not None]
    return sum(v >= 0.5 for v in scored), len(scored)


def ladder_rungs(reference: list[Observation], provider: list[Observation]) -> dict[int, Rung]:
    """The provider's ladder cases by rung length, shortest first, with the reference's
    answers to the same rungs; empty when the provider answered no ladder case.

    A rung's length is the reference's count of its prompts: the median over its cases (the
    target the cases were built for where the reference counted none). Rungs of two ladders
    that come out at the same length are one rung."""
    by_target: dict[int, Rung] = defaultdict(Rung)
    for o in provider:
        if (target := _target(o)) is not None:
            by_target[target].provider.append(o)
    for o in reference:
        if (target := _target(o)) is not None and target in by_target:
            by_target[target].reference.append(o)
    counts = answered_by_reference(reference)
    by_length: dict[int, Rung] = defaultdict(Rung)
    for target, rung in by_target.items():
        probes = {o.probe_hash for o in (*rung.provider, *rung.reference)}
        known = [n for h in probes if (n := counts.get(h)) is not None]
        length = round(statistics.median(known)) if known else target
        merged = by_length[max(length, 1)]  # a rung has a length (a count of 0: a broken one)
        merged.provider += rung.provider
        merged.reference += rung.reference
    return dict(sorted(by_length.items()))


def judged_rungs(rungs: Iterable[RungResult]) -> int:
    """k: the rungs something can be said about (not unknown, `auditor.stats.ladder`)."""
    return sum(
        bool(r.refused or r.billed_short or (r.provider_tried and r.reference_tried)) for r in rungs
    )


def ladder_window(
    reference: list[Observation],
    provider: list[Observation],
    window: int | None = None,
    level: float | None = None,
) -> tuple[EffectiveWindow, int, dict[int, Rung]] | None:
    """The provider's effective window, k, and its rungs by length; None without ladder
    answers. `window`: the context window the model declares (a refusal of a request it
    cannot hold is not counted); `level`: the verdict's (None: `VERDICT_ALPHA`).

    Where it breaks is tested with Holm's step-down at `SHARE` x `level` (`ALPHA` by
    default) across the rungs; its lower bound, and which rungs confirm, at `BOUND_ALPHA`:
    an intersection-union claim needs no
    correction (`auditor.stats.ladder`), and corrected, a rung of 12 answers all right on
    both sides would confirm nothing."""
    rungs = ladder_rungs(reference, provider)
    if not rungs:
        return None
    answered = answered_by_reference(reference)
    results = [rung.result(length, answered, window) for length, rung in rungs.items()]
    alpha = SHARE * (VERDICT_ALPHA if level is None else level)
    found = effective_window(results, alpha=alpha, multiplicity="holm", bound_alpha=BOUND_ALPHA)
    return found, judged_rungs(results), rungs


def rung_p(verdict: RungVerdict) -> float | None:
    """A rung's p-value in `ladder:breaks`: a refusal or an answer billed short is direct
    evidence (0); None for a rung nothing can be said about."""
    if verdict.status == "unknown":
        return None
    if verdict.reason in ("refused", "billed_short"):
        return 0.0
    return verdict.p_value


def _in_words(tasks: set[str]) -> str:
    """ "retrieval", "aggregation and retrieval": what the tasks ask."""
    words = sorted({TASK_WORDS.get(t, t.replace("_", " ")) for t in tasks})
    if not words:
        return "the tasks"
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


_VERDICT_WORDS = {
    "match": "match",
    "unknown": "unknown",
    "refused": "refused",
    "billed_short": "billed short",
    "pass_rate": "fails",
}


def _rung_text(v: RungVerdict) -> str:
    """One rung's verdict: "1,410 refused (8)", "356 match, 6/8 against 7/8 p 0.500"."""
    r = v.result
    text = f"{v.length:,} {_VERDICT_WORDS[v.reason or v.status]}"
    if v.reason == "refused":
        text += f" ({r.refused})"
    elif v.reason == "billed_short":
        text += f" ({r.billed_short})"
    if r.provider_tried and r.reference_tried:
        text += (
            f", {r.provider_passed}/{r.provider_tried} against "
            f"{r.reference_passed}/{r.reference_tried} p {v.p_value or 0.0:.3f}"
        )
    if r.errors:
        text += f", {r.errors} errors"
    return text + (" confirmed" if v.confirmed else "")


def window_summary(found: EffectiveWindow, rungs: dict[int, Rung]) -> str:
    """The effective window in one sentence, naming what fails where it breaks."""
    broken = rungs.get(found.break_at) if found.break_at is not None else None
    return found.summary(task=_in_words(broken.failing_tasks() if broken else set()))


def ladder_comparisons(
    reference: list[Observation],
    provider: list[Observation],
    window: int | None = None,
    level: float | None = None,
) -> list[Comparison]:
    """`ladder:effective_window`, `ladder:lower_bound` and `ladder:breaks` (module
    docstring); nothing for a provider that answered no ladder case. `level`: the verdict's
    (None: `VERDICT_ALPHA`)."""
    judged = ladder_window(reference, provider, window, level)
    if judged is None:
        return []
    found, k, rungs = judged
    summary = window_summary(found, rungs)
    if k == 0:
        result = TestResult(
            name="ladder:effective_window",
            statistic=None,
            p_value=None,
            effect=None,
            n=0,
            status="not_available",
            note=summary,
        )
        return [Comparison(result, LadderMetric.EFFECTIVE_WINDOW, Scope.LADDER)]
    top = max(v.length for v in found.rungs if v.status != "unknown")
    effect = (found.length or 0) / top - 1.0
    p_values = [p for v in found.rungs if (p := rung_p(v)) is not None]
    declared = f"; declared {window:,}" if window is not None else ""
    lower = found.lower_bound
    confirmed = f"confirmed to {lower:,}" if lower else "not confirmed at any rung"
    rung_notes = "; ".join(_rung_text(v) for v in found.rungs)
    return [
        Comparison(
            figure(
                "ladder:effective_window",
                found.length or 0,
                effect,
                k,
                # the summary says the lower bound ("confirmed to 992")
                note=f"{summary}{declared}; rungs (tokens, verdict, provider passed/tried "
                f"against the reference's): {rung_notes}",
            ),
            LadderMetric.EFFECTIVE_WINDOW,
            Scope.LADDER,
        ),
        Comparison(
            figure("ladder:lower_bound", lower or 0, None, k, note=confirmed),
            LadderMetric.LOWER_BOUND,
            Scope.LADDER,
        ),
        Comparison(
            TestResult(
                name="ladder:breaks",
                statistic=found.break_at,
                p_value=float(holm_adjust(p_values).min()),
                effect=effect,
                n=k,
                note=summary,
            ),
            LadderMetric.BREAKS,
            Scope.LADDER,
        ),
    ]


@comparators.register("ladder")
class LadderComparator(Comparator):
    def compare(self, data: ComparisonInput) -> list[Comparison]:
        return ladder_comparisons(data.reference, data.provider, data.context_window, data.level)


def _breaks(rejection: Rejection, readings: Readings) -> str:
    return rejection.comparison.result.note or "answers unlike the reference on the ladder"


alpha_shares.add("ladder:breaks", SHARE)
register(
    Rule(
        name="context_truncation.ladder_breaks",
        metric=LadderMetric.BREAKS,
        direction="down",
        kind="context_truncation",
        weight=0.9,
        summary=_breaks,
    ),
)
