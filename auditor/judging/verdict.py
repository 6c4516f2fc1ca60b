"""The verdict, decided in one place: a provider's comparisons -> which tests reject, the
verdict, its severity, and each test beside its honest band.

- Multiple testing: the p-values of one provider are combined with Benjamini-Hochberg at
  the level `alpha / looks` (a sequential budget looks several times; by the union bound the
  false-alarm rate stays at `alpha`). A test registered in `alpha_shares` (a suite's main
  question, such as the context ladder's `ladder:breaks`) is set apart with its own share of
  that level, and the rest share what is left (`auditor.stats.shared_bh_adjust`): among the
  twenty-odd other tests of its round, a clear ladder break would otherwise not survive.
- `deviant` when at least one test survives; `unavailable` when errors left fewer than
  `min_answered_fraction` of the requests answered; `consistent` when at least `min_tests`
  tests ran and none survived; `inconclusive` otherwise (too few samples, no baseline).
  A refusal of a prompt as longer than the context, where the reference answered the same
  prompt, is no error here: it is judged as evidence (`refusals:context_length`,
  `auditor.comparisons.refusals`), not as an outage. Every other error counts.
- Severity: `critical` for a deviant finding whose diagnoses include a kind that changes the
  model served (a `Kind` marked critical), `warning` for other deviant and unavailable
  findings, else `info`.
- Honest bands: each test's `honest_range` is its own (from the round's trusted providers)
  or the band passed in for its statistic (the latest `auditor calibrate`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from auditor.comparisons import Comparison
from auditor.comparisons.rules import Rejection, alpha_shares, kinds
from auditor.records import Diagnosis, Severity, TestResult, Verdict
from auditor.stats import shared_bh_adjust

DETECTOR = "comparison-v1"  # recorded with every finding and calibration
ALPHA = 0.05
MIN_TESTS_FOR_CONSISTENT = 3
MIN_ANSWERED_FRACTION = 0.5

Band = tuple[float, float]


@dataclass(frozen=True)
class VerdictPolicy:
    """The levels a verdict is reached at (recorded in `findings.detector_params`)."""

    alpha: float = ALPHA
    looks: int = 1
    min_tests: int = MIN_TESTS_FOR_CONSISTENT
    min_answered_fraction: float = MIN_ANSWERED_FRACTION

    @property
    def level(self) -> float:
        """Each look, and the final verdict, test at alpha / looks."""
        return self.alpha / self.looks

    def params(self) -> dict[str, float | int | str]:
        return {
            "alpha": self.alpha,
            "looks": self.looks,
            "alpha_per_look": self.level,
            "min_answered_fraction": self.min_answered_fraction,
            "min_tests": self.min_tests,
            "multiple_testing": "BH",
            # the tests set apart, each at its share of the level
            **{f"alpha_share:{name}": share for name, share in alpha_shares.items()},
        }


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    rejected: list[Rejection]
    tests: list[TestResult] = field(default_factory=list)


def adjusted_p_values(tests: Iterable[TestResult]) -> list[tuple[TestResult, float]]:
    """Each test with a p-value beside its adjusted p-value: Benjamini-Hochberg, with the
    tests of `alpha_shares` set apart at their shares (module docstring)."""
    tested = [t for t in tests if t.p_value is not None]
    shares = dict(alpha_shares.items())
    adjusted = shared_bh_adjust(
        [t.p_value for t in tested], [shares.get(t.name, 0.0) for t in tested]
    )
    return [(t, float(p)) for t, p in zip(tested, adjusted, strict=True)]


def rejected(comparisons: list[Comparison], level: float = ALPHA) -> list[Rejection]:
    """The tests rejected at `level`, with their adjusted p-values."""
    tested = [c for c in comparisons if c.result.p_value is not None]
    adjusted = adjusted_p_values(c.result for c in tested)
    return [Rejection(c, p) for c, (_, p) in zip(tested, adjusted, strict=True) if p <= level]


def combined_p(tests: Iterable[TestResult]) -> float | None:
    """The smallest level at which any of the tests is rejected (None when none has a
    p-value): the provider is deviant at level `level` exactly when this is at most
    `level`."""
    adjusted = [p for _, p in adjusted_p_values(tests)]
    return min(adjusted) if adjusted else None


def with_band(result: TestResult, bands: Mapping[str, Band]) -> TestResult:
    """The test with the honest band of its statistic, unless it carries its own."""
    band = bands.get(result.name)
    if band is None or result.honest_range != (None, None):
        return result
    return result.model_copy(update={"honest_range": (float(band[0]), float(band[1]))})


def judge(
    comparisons: list[Comparison],
    requests: int,
    errors: int,
    policy: VerdictPolicy,
    bands: Mapping[str, Band] | None = None,
    context_refusals: int = 0,
) -> Judgement:
    """The verdict of one provider from its comparisons and its request counts.
    `context_refusals`: those of the `errors` that refused as too long a prompt the
    reference answered (`auditor.comparisons.refusals.refused_where_answered`), which do not
    count against its availability."""
    if not 0 <= context_refusals <= errors:
        raise ValueError(f"need 0 <= context_refusals <= errors, got {context_refusals}")
    tests = [with_band(c.result, bands or {}) for c in comparisons]
    answered = requests - (errors - context_refusals)
    if requests == 0 or answered < policy.min_answered_fraction * requests:
        return Judgement("unavailable", [], tests)
    survivors = rejected(comparisons, policy.level)
    if survivors:
        return Judgement("deviant", survivors, tests)
    tested = sum(c.result.p_value is not None for c in comparisons)
    return Judgement("consistent" if tested >= policy.min_tests else "inconclusive", [], tests)


def severity_for(verdict: str, diagnoses: list[Diagnosis]) -> Severity:
    if verdict == "unavailable":
        return "warning"
    if verdict != "deviant":
        return "info"
    critical = {k.name for k in kinds.values() if k.critical}
    return "critical" if any(d.kind in critical for d in diagnoses) else "warning"
