"""A provider's effective context window, read from a context ladder. No I/O.

A context ladder sends prompts of growing length ("rungs") to the provider and to the
reference engine (the official weights), several long-context tasks per rung, each with an
objectively right answer. `RungResult` holds one rung's counts; `effective_window` reads them.

Definitions:

- A rung is *unknown* when nothing can be said about it: no refusal, no answer billed short,
  and no scored answer on one side (every provider request errored, or the reference has no
  scored answer at that length). Unknown rungs are skipped: they neither extend nor stop
  the window.
- A known rung *matches* when the provider did not refuse it ("context length exceeded"),
  billed no answer's prompt short of the reference's token count (the host silently dropped
  part of the prompt), and its pass rate is not significantly below the reference's: the
  one-sided Boschloo exact test of H0 p_provider >= p_reference against p_provider <
  p_reference gives p > `alpha`. Otherwise it *fails*, for the first of the reasons
  "refused", "billed_short", "pass_rate" that applies.
- A rung of m >= 2 tasks (`RungResult.tasks`, m counting those both sides answered) is
  tested pooled and task by task, half the level to each: its p-value is the smaller of 2 x
  the pooled Boschloo p-value and 2m x the smallest task's (a weighted Bonferroni), capped
  at 1. Pooled alone, a cut that loses one task's lines and helps another cancels out: a
  host that keeps only a prompt's end loses the needle planted first (0 of 6 against 6 of 6)
  and, with the first of two keys gone, answers the other key's question without its
  distractor (5 of 6 against 2 of 6): 5 of 12 against 8 of 12, p 0.15 pooled, 0.001 by the
  needle's own test (0.00024 times 4). Task by task alone, a rung of many tasks with few
  answers each would lose the power their sum has. Rates, the difference and its lower bound
  stay pooled.
- The *effective window* is the longest rung length L such that every known rung up to and
  including L matches. The first failing known rung stops it (`break_at`, with its `reason`);
  if that is the first known rung, the window is None ("below the ladder"). If no rung fails,
  the window is the top known rung and `break_at` is None.
- Its *lower bound* is the longest rung length up to which the match is also confirmed: at
  every known rung up to it, the provider's pass rate is shown non-inferior to the
  reference's, i.e. the one-sided 1 - `alpha` lower confidence bound of p_provider -
  p_reference (Newcombe's hybrid score interval) is above -`margin`. None when the first
  known rung does not confirm. A failed test of inferiority is not evidence of equality (one
  right answer out of one matches but confirms nothing), hence the two figures; the lower
  bound never exceeds the effective window.

Multiplicity. By default each rung is tested on its own at level `alpha`, with no
correction for the number of rungs, and the window stops at the first failure: on an honest
provider the chance of a false break grows with the number of known rungs k, up to
1 - (1 - alpha)^k (simulated: about 0.23 for six rungs of 20 tasks at a pass rate of 0.8 and
alpha = 0.05). `multiplicity="holm"` keeps the ladder-wide false-break rate at `alpha`: a
rung's pass-rate test fails when its Holm step-down adjusted p-value across the k known rungs
is at most `alpha`, a refused or billed-short rung counting as p = 0 in the family. Holm
breaks an honest ladder exactly when Bonferroni (`alpha / k` a rung) would (both need the
smallest p-value at most `alpha / k`), and, once one rung has failed, tests the others at
`alpha / (k - 1)`, `alpha / (k - 2)`, ...: a cut that fails the top rung clearly and the one
below it less clearly is placed at the lower one, where Bonferroni would pass it. The lower
bound needs no such correction: it claims non-inferiority at every rung up to it, an
intersection-union test, and it passes a rung where the provider is in truth inferior only if
that rung's own one-sided bound errs, which happens with probability about `alpha` (the
Newcombe interval is approximate, though close to nominal even on small samples).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import pairwise
from typing import Literal

from scipy import stats

from auditor.stats.multiple import holm_adjust
from auditor.stats.outcome import safe_float

RungStatus = Literal["match", "fail", "unknown"]
Multiplicity = Literal["none", "holm"]
BreakReason = Literal["refused", "billed_short", "pass_rate"]


def _check_sides(label: str, counts: TaskCounts | RungResult) -> None:
    """Each side's right answers are at most its scored ones (`label` names whose)."""
    for side in ("provider", "reference"):
        passed, tried = getattr(counts, f"{side}_passed"), getattr(counts, f"{side}_tried")
        if not 0 <= passed <= tried:
            raise ValueError(
                f"{label}: need 0 <= {side}_passed <= {side}_tried, got {passed} and {tried}"
            )


@dataclass(frozen=True)
class TaskCounts:
    """One task's answers at one rung, both sides: scored (`*_tried`) and right (`*_passed`)."""

    task: str
    provider_passed: int
    provider_tried: int
    reference_passed: int
    reference_tried: int

    def __post_init__(self) -> None:
        _check_sides(f"task {self.task}", self)

    @property
    def comparable(self) -> bool:
        return self.provider_tried > 0 and self.reference_tried > 0


@dataclass(frozen=True)
class RungResult:
    """One rung's counts.

    `length`: prompt tokens as the reference's tokenizer counts them. `*_tried`: answers
    scored (errors excluded), `*_passed` of them right. `refused`: provider answers "context
    length exceeded"; `errors`: other provider errors, which say nothing about the context;
    `billed_short`: provider answers billed fewer prompt tokens than the reference counts,
    beyond a tolerance. `tasks`: the same counts task by task, which the pass-rate test reads
    when there are two or more (module docstring); empty: the rung is one task.
    """

    length: int
    provider_passed: int
    provider_tried: int
    reference_passed: int
    reference_tried: int
    refused: int = 0
    errors: int = 0
    billed_short: int = 0
    tasks: tuple[TaskCounts, ...] = ()

    def __post_init__(self) -> None:
        for name in (
            "length",
            "provider_passed",
            "provider_tried",
            "reference_passed",
            "reference_tried",
            "refused",
            "errors",
            "billed_short",
        ):
            value = operator.index(getattr(self, name))
            if value < 0:
                raise ValueError(f"RungResult.{name} must be non-negative, got {value}")
            object.__setattr__(self, name, value)
        if self.length == 0:
            raise ValueError("RungResult.length must be positive")
        _check_sides(f"rung of {self.length} tokens", self)
        for side in ("provider", "reference"):
            tried = getattr(self, f"{side}_tried")
            if self.tasks and sum(getattr(t, f"{side}_tried") for t in self.tasks) != tried:
                raise ValueError(
                    f"rung of {self.length} tokens: the tasks' {side}_tried do not add up to "
                    f"{tried}"
                )


@dataclass(frozen=True)
class RungVerdict:
    """What one rung says. Rates, `difference` (provider minus reference), its Newcombe lower
    bound `lower` and the Boschloo `p_value` are None where a side has no scored answer."""

    length: int
    status: RungStatus
    reason: BreakReason | None
    p_value: float | None
    provider_rate: float | None
    reference_rate: float | None
    difference: float | None
    lower: float | None
    confirmed: bool
    result: RungResult


@dataclass(frozen=True)
class EffectiveWindow:
    """The effective window (see the module docstring), in prompt tokens.

    `length`: the effective window (None: below the ladder, or no known rung); `lower_bound`:
    how far the match is confirmed; `break_at`, `reason`: the first failing rung and why
    (None when none fails); `rungs`: every rung's verdict, shortest first.
    """

    length: int | None
    lower_bound: int | None
    break_at: int | None
    reason: BreakReason | None
    rungs: tuple[RungVerdict, ...]

    def summary(self, task: str = "the tasks") -> str:
        """One plain sentence, e.g. "answers like the reference up to 1,488 tokens (confirmed to
        992); fails retrieval at 1,885 tokens (pass rate 0.17 against the reference's 0.83,
        p 0.004)". `task` names what the rungs ask ("retrieval")."""
        if self.length is None and self.break_at is None:
            return "no rung of the ladder could be judged (no scored answers)"
        if self.length is None:
            head = "answers like the reference at no rung of the ladder"
        else:
            confirmed = (
                "not confirmed at any rung"
                if self.lower_bound is None
                else f"confirmed to {self.lower_bound:,}"
            )
            head = f"answers like the reference up to {self.length:,} tokens ({confirmed})"
        broken = next((r for r in self.rungs if r.length == self.break_at), None)
        if broken is None:
            top = self.length == max(r.length for r in self.rungs)
            return f"{head}, {'the top of the ladder' if top else 'the longest rung judged'}"
        return f"{head}; {_failure(broken, task)}"


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score two-sided confidence interval for a binomial proportion k / n, without
    continuity correction. n = 0 gives (0, 1)."""
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if not 0 < confidence < 1:
        raise ValueError("confidence must be in (0, 1)")
    if n == 0:
        return 0.0, 1.0
    z = float(stats.norm.ppf(0.5 + confidence / 2.0))
    p = k / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2.0 * n)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / denominator
    # the exact ends (0 at k = 0, 1 at k = n) are lost to rounding otherwise
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high


def newcombe_interval(
    k1: int, n1: int, k2: int, n2: int, confidence: float = 0.95
) -> tuple[float, float]:
    """Two-sided confidence interval for k1 / n1 - k2 / n2, Newcombe's hybrid score interval.

    Newcombe (1998), "Interval estimation for the difference between independent proportions:
    comparison of eleven methods", Statistics in Medicine 17:873-890, method 10: the Wilson
    intervals (l_i, u_i) of each proportion combined as

        (d - sqrt((p1 - l1)^2 + (u2 - p2)^2),  d + sqrt((u1 - p1)^2 + (p2 - l2)^2)).

    Unlike the Wald interval it stays inside [-1, 1] and does not collapse to a point when a
    proportion is 0 or 1, which pass rates on a few tasks often are. Both n must be positive.
    """
    if n1 <= 0 or n2 <= 0:
        raise ValueError(f"need positive sample sizes, got {n1} and {n2}")
    l1, u1 = wilson_interval(k1, n1, confidence)
    l2, u2 = wilson_interval(k2, n2, confidence)
    p1, p2 = k1 / n1, k2 / n2
    d = p1 - p2
    return d - math.hypot(p1 - l1, u2 - p2), d + math.hypot(u1 - p1, p2 - l2)


def worse_pass_rate_p(
    provider_passed: int, provider_tried: int, reference_passed: int, reference_tried: int
) -> float:
    """One-sided Boschloo exact p-value of H0 p_provider >= p_reference (against
    p_provider < p_reference). Both tried counts must be positive.

    scipy's `boschloo_exact` treats each *column* of the table as one binomial sample and
    tests p1 (column 1) against p2 (column 2), so the provider is the first column:
    [[provider passed, reference passed], [provider failed, reference failed]]. The transposed
    table would condition on the wrong margins (and gives NaN when every answer passed).
    """
    if provider_tried <= 0 or reference_tried <= 0:
        raise ValueError("both sides need at least one scored answer")
    table = [
        [provider_passed, reference_passed],
        [provider_tried - provider_passed, reference_tried - reference_passed],
    ]
    return safe_float(stats.boschloo_exact(table, alternative="less").pvalue, 1.0)


def rung_pass_rate_p(rung: RungResult) -> float:
    """The rung's pass-rate p-value (module docstring): the pooled Boschloo test, and where
    m >= 2 tasks have answers on both sides, the smaller of 2 x the pooled p-value and 2m x
    the smallest task's (a weighted Bonferroni). Both sides need a scored answer."""
    pooled = worse_pass_rate_p(
        rung.provider_passed, rung.provider_tried, rung.reference_passed, rung.reference_tried
    )
    comparable = [t for t in rung.tasks if t.comparable]
    if len(comparable) < 2:
        return pooled
    per_task = [
        worse_pass_rate_p(
            t.provider_passed, t.provider_tried, t.reference_passed, t.reference_tried
        )
        for t in comparable
    ]
    return min(1.0, 2.0 * pooled, 2.0 * len(per_task) * min(per_task))


def judge_rung(
    rung: RungResult,
    *,
    alpha: float = 0.05,
    margin: float = 0.25,
    bound_alpha: float | None = None,
) -> RungVerdict:
    """One rung's status, p-value, difference and its lower bound (module docstring): the
    inferiority test at `alpha`, the lower bound at `bound_alpha` (None: `alpha`)."""
    bound_alpha = alpha if bound_alpha is None else bound_alpha
    comparable = rung.provider_tried > 0 and rung.reference_tried > 0
    p_value: float | None = None
    provider_rate: float | None = None
    reference_rate: float | None = None
    difference: float | None = None
    lower: float | None = None
    if comparable:
        provider_rate = rung.provider_passed / rung.provider_tried
        reference_rate = rung.reference_passed / rung.reference_tried
        difference = provider_rate - reference_rate
        p_value = rung_pass_rate_p(rung)
        # the lower end of the two-sided 1 - 2 alpha interval is a one-sided 1 - alpha bound
        lower, _ = newcombe_interval(
            rung.provider_passed,
            rung.provider_tried,
            rung.reference_passed,
            rung.reference_tried,
            confidence=1.0 - 2.0 * bound_alpha,
        )
    reason: BreakReason | None = None
    if rung.refused:
        reason = "refused"
    elif rung.billed_short:
        reason = "billed_short"
    elif p_value is not None and p_value <= alpha:
        reason = "pass_rate"
    status: RungStatus = "fail" if reason else ("match" if comparable else "unknown")
    confirmed = status == "match" and lower is not None and lower > -margin
    return RungVerdict(
        length=rung.length,
        status=status,
        reason=reason,
        p_value=p_value,
        provider_rate=provider_rate,
        reference_rate=reference_rate,
        difference=difference,
        lower=lower,
        confirmed=confirmed,
        result=rung,
    )


def effective_window(
    rungs: Sequence[RungResult],
    *,
    alpha: float = 0.05,
    margin: float = 0.25,
    multiplicity: Multiplicity = "none",
    bound_alpha: float | None = None,
) -> EffectiveWindow:
    """The provider's effective context window from a ladder's rungs (in any order).

    `alpha`: the one-sided level of the inferiority test; `bound_alpha`: that of the
    non-inferiority bound (None: `alpha`; a confidence bound, not a decision, so it need not
    follow the verdict's level); `margin`: how far below the reference's pass rate still
    counts as non-inferior; `multiplicity`: "none" tests each rung at `alpha`, "holm" across
    the rungs (module docstring). The lower bound is at `bound_alpha` either way.
    """
    if not rungs:
        raise ValueError("the ladder has no rung")
    for name, value in (("alpha", alpha), ("bound_alpha", bound_alpha)):
        if value is not None and not 0 < value < 0.5:
            raise ValueError(f"{name} must be in (0, 0.5), got {value}")
    if not 0 <= margin <= 1:
        raise ValueError(f"margin must be in [0, 1], got {margin}")
    ordered = sorted(rungs, key=lambda r: r.length)
    for shorter, longer in pairwise(ordered):
        if shorter.length == longer.length:
            raise ValueError(f"two rungs of {longer.length} tokens: lengths must be distinct")
    verdicts = tuple(
        judge_rung(r, alpha=alpha, margin=margin, bound_alpha=bound_alpha) for r in ordered
    )
    if multiplicity == "holm":
        verdicts = _holm(verdicts, alpha)
    length = lower_bound = None
    confirming = True
    for verdict in verdicts:
        if verdict.status == "unknown":
            continue
        if verdict.status == "fail":
            return EffectiveWindow(length, lower_bound, verdict.length, verdict.reason, verdicts)
        length = verdict.length
        confirming = confirming and verdict.confirmed
        if confirming:
            lower_bound = verdict.length
    return EffectiveWindow(length, lower_bound, None, None, verdicts)


def _holm(verdicts: tuple[RungVerdict, ...], alpha: float) -> tuple[RungVerdict, ...]:
    """The verdicts with each pass-rate test decided by Holm's step-down across the known
    rungs. Only a rung that matched at `alpha` was confirmed, and Holm fails no such rung
    (its adjusted p-values are at least the raw ones), so `confirmed` stands as `judge_rung`
    set it."""
    known = [v for v in verdicts if v.status != "unknown"]
    direct = ("refused", "billed_short")
    adjusted = holm_adjust([0.0 if v.reason in direct else v.p_value for v in known])
    fails = {v.length: bool(a <= alpha) for v, a in zip(known, adjusted, strict=True)}
    out: list[RungVerdict] = []
    for v in verdicts:
        if v.status == "unknown" or v.reason in direct:
            out.append(v)
            continue
        failed = fails[v.length]
        out.append(
            replace(v, status="fail" if failed else "match", reason="pass_rate" if failed else None)
        )
    return tuple(out)


def _failure(verdict: RungVerdict, task: str) -> str:
    """The failing rung, in words."""
    tokens = f"{verdict.length:,} tokens"
    rung = verdict.result
    if verdict.reason == "refused":
        return f"refuses prompts of {tokens} (context length exceeded)"
    if verdict.reason == "billed_short":
        answers = max(rung.provider_tried, rung.billed_short)
        return (
            f"drops part of prompts of {tokens} ({rung.billed_short} of {answers} answers "
            "billed short of the prompt's length)"
        )
    return (
        f"fails {task} at {tokens} (pass rate {verdict.provider_rate:.2f} against the "
        f"reference's {verdict.reference_rate:.2f}, p {_p(verdict.p_value)})"
    )


def _p(p_value: float | None) -> str:
    if p_value is None:
        return "n/a"
    return "< 0.001" if p_value < 0.001 else f"{p_value:.3f}"
