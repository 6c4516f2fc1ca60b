"""The verdict on a provider that refuses prompts as longer than its context: refusals of
prompts the reference answered are the finding (`context_truncation`), not an outage; every
other error keeps counting against its availability. And the ladder's own share of the level:
a clear break of the context ladder is not lost among its round's other tests."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from helpers.ladder import WINDOW, every_request
from helpers.ladder import answer as answer_on_ladder
from helpers.ladder import reference as ladder_reference
from helpers.observations import observation

from auditor.comparisons import Comparison
from auditor.comparisons.ladder import SHARE as LADDER_SHARE
from auditor.comparisons.ladder import ladder_comparisons
from auditor.comparisons.observation import Observation
from auditor.comparisons.rules import alpha_shares
from auditor.judging.diagnose import diagnose
from auditor.judging.findings import ProviderRecord, assess
from auditor.judging.verdict import VerdictPolicy, adjusted_p_values, combined_p, judge
from auditor.providers.context_length import ContextOverflow
from auditor.records import Finding, TestResult
from auditor.stats import bh_adjust

REQUESTS = 53
SCORES = {"expect_pass": 1.0, "words": 2.0}  # what the scorers make of "answer i"


def tokens(probe: int) -> int:
    """The reference's count of probe `probe`'s prompt: 40 to 1,600 tokens."""
    return 40 + 30 * probe


def answer(probe: int, endpoint: str = "provider") -> Observation:
    return observation(probe, endpoint=endpoint, prompt_tokens=tokens(probe), scores=SCORES)


def failed(probe: int, error_class: str, endpoint: str = "provider") -> Observation:
    message = None
    if error_class == "context_length_exceeded":
        stated = ContextOverflow(prompt_tokens=641, limit=640, prompt_count="at_least")
        message = f"{stated.note()}; HTTP 400: This model's maximum context length is 640..."
    return observation(
        probe,
        endpoint=endpoint,
        ok=False,
        text=None,
        finish_reason=None,
        prompt_tokens=None,
        completion_tokens=None,
        total_tokens=None,
        error_class=error_class,
        error_message=message,
    )


def provider(failing: range, error_class: str) -> list[Observation]:
    return [failed(i, error_class) if i in failing else answer(i) for i in range(REQUESTS)]


def judged(
    observations: list[Observation], reference: list[Observation] | None = None, **kw: Any
) -> Finding:
    reference = reference or [answer(i, "reference") for i in range(REQUESTS)]
    errors: dict[str, int] = {}
    for o in observations:
        if o.error_class:
            errors[o.error_class] = errors.get(o.error_class, 0) + 1
    record = ProviderRecord("m", "p", len(observations), sum(errors.values()), 0, None, errors)
    return assess(
        record, "reference", reference, observations, [], VerdictPolicy(looks=3), {}, "t", **kw
    )


def test_refusing_5_of_53_prompts_the_reference_answered_is_context_truncation() -> None:
    finding = judged(provider(range(48, 53), "context_length_exceeded"))
    assert finding.verdict == "deviant" and finding.severity == "critical"
    assert [d.kind for d in finding.diagnoses][:1] == ["context_truncation"]
    assert finding.diagnoses[0].summary == (
        "refuses prompts from 1,480 tokens (the reference's count) that the reference "
        "answered; answers up to 1,450; states a limit of 640 (5 of 53 requests): the "
        "context is shorter than the model's"
    )
    # The refusals stay recorded as errors; they only do not count as an outage.
    assert (finding.errors, finding.errors_by_class) == (5, {"context_length_exceeded": 5})
    # The evidence: the shortest prompt refused, the reference's answer beside the error.
    first = finding.evidence[0]
    assert (first.probe, first.reference) == ("p48", "answer 48")
    assert first.provider.startswith("context length exceeded: prompt_tokens>=641 limit=640")


def test_refusing_most_prompts_the_reference_answered_is_still_deviant_not_unavailable() -> None:
    finding = judged(provider(range(10, 53), "context_length_exceeded"))
    assert finding.verdict == "deviant"
    assert finding.diagnoses[0].kind == "context_truncation"


def test_a_provider_that_refuses_nothing_is_consistent_as_before() -> None:
    finding = judged(provider(range(0), "context_length_exceeded"))
    assert (finding.verdict, finding.diagnoses, finding.evidence) == ("consistent", [], [])
    assert not [t for t in finding.tests if t.name == "refusals:context_length"]


@pytest.mark.parametrize("error_class", ["server_error", "rate_limited", "client_error"])
def test_other_errors_still_make_a_provider_unavailable(error_class: str) -> None:
    assert judged(provider(range(20, 53), error_class)).verdict == "unavailable"
    # ... and a few of them are noise, not a finding.
    assert judged(provider(range(48, 53), error_class)).verdict == "consistent"


def test_refusals_of_prompts_the_reference_refused_too_count_as_errors() -> None:
    reference = [
        answer(i, "reference") if i < 20 else failed(i, "context_length_exceeded", "reference")
        for i in range(REQUESTS)
    ]
    finding = judged(provider(range(20, 53), "context_length_exceeded"), reference)
    assert finding.verdict == "unavailable"


def test_refusals_above_the_declared_window_are_not_counted() -> None:
    # 1,480 tokens and up do not fit a declared window of 1,450: refusing them is the
    # provider's right (and still no outage: the reference answered them).
    finding = judged(provider(range(48, 53), "context_length_exceeded"), context_window=1450)
    assert finding.verdict == "consistent"
    assert not [t for t in finding.tests if t.name == "refusals:context_length"]


def test_context_refusals_are_some_of_the_errors() -> None:
    with pytest.raises(ValueError, match="context_refusals"):
        judge([], 10, 2, VerdictPolicy(), context_refusals=3)
    assert judge([], 10, 8, VerdictPolicy()).verdict == "unavailable"
    assert judge([], 10, 8, VerdictPolicy(), context_refusals=4).verdict == "inconclusive"


# ------------------------------------------------- the ladder's share of the level


OTHERS = [0.013, 0.014, 0.08, 0.43] + [1.0] * 15


def ladder_round() -> list[Comparison]:
    """A provider whose ladder breaks at 1,984 tokens (retrieval and one variable-tracking
    answer fail from there: Holm's p 0.0104 over six rungs) among 19 other tests of its round
    that each say little (the smallest p 0.013), as in a ladder round of the bench."""
    provider = [
        answer_on_ladder(
            t,
            r,
            s,
            passed=r < 3 or not (t in ("needle", "multikey") or (t, s) == ("variable_tracking", 0)),
        )
        for t, r, s in every_request()
    ]
    ladder = ladder_comparisons(ladder_reference(), provider, WINDOW)
    others = OTHERS
    return ladder + [
        Comparison(
            TestResult(name=f"other:{i}", statistic=0.0, p_value=p, effect=0.1, n=24),
            f"other_{i}",
            "all",
        )
        for i, p in enumerate(others)
    ]


def test_a_ladder_break_is_not_diluted_among_the_rounds_other_tests() -> None:
    comparisons = ladder_round()
    breaks = next(c.result for c in comparisons if c.result.name == "ladder:breaks")
    assert breaks.p_value == pytest.approx(0.0104, abs=1e-4)
    judgement = judge(comparisons, 100, 0, VerdictPolicy())
    assert judgement.verdict == "deviant"
    assert [r.comparison.result.name for r in judgement.rejected] == ["ladder:breaks"]
    assert judgement.rejected[0].adjusted_p == pytest.approx(breaks.p_value / LADDER_SHARE)
    (diagnosis,) = diagnose(judgement.rejected, comparisons)
    assert diagnosis.kind == "context_truncation"
    assert "fails retrieval and variable tracking at 1,984 tokens" in diagnosis.summary
    assert combined_p(c.result for c in comparisons) == pytest.approx(breaks.p_value / LADDER_SHARE)


def test_without_its_share_the_same_break_is_lost_in_benjamini_hochberg(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(alpha_shares, "_items", {})
    judgement = judge(ladder_round(), 100, 0, VerdictPolicy())
    assert (judgement.verdict, judgement.rejected) == ("consistent", [])


def test_the_other_tests_share_what_is_left_of_the_level() -> None:
    adjusted = {t.name: p for t, p in adjusted_p_values(c.result for c in ladder_round())}
    expected = np.minimum(bh_adjust(OTHERS) / (1 - LADDER_SHARE), 1.0)
    assert [adjusted[f"other:{i}"] for i in range(len(OTHERS))] == pytest.approx(expected)
    assert VerdictPolicy().params()["alpha_share:ladder:breaks"] == LADDER_SHARE
