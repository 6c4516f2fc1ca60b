"""The effective window per provider, read from its answers to a context ladder: one rung per
length (the reference's count of its prompts), Holm's step-down across the rungs, refusals below
the declared window and answers billed short as direct evidence, and nothing at all for a
provider that answered no ladder case."""

from __future__ import annotations

import dataclasses

import pytest
from helpers.ladder import (
    LENGTHS,
    SAMPLES,
    TARGETS,
    WINDOW,
    answer,
    error,
    every_request,
    honest,
    reference,
)
from helpers.observations import observation

from auditor.comparisons.base import ComparisonInput
from auditor.comparisons.ladder import ALPHA, LadderComparator, ladder_comparisons, ladder_window
from auditor.comparisons.observation import Observation
from auditor.comparisons.rules import Readings, Rejection, alpha_shares, rules
from auditor.judging.findings import ProviderRecord, assess
from auditor.judging.verdict import ALPHA as VERDICT_ALPHA
from auditor.judging.verdict import VerdictPolicy
from auditor.records import Finding, TestResult
from auditor.stats.ladder import TaskCounts, effective_window


def by_name(results: list[TestResult]) -> dict[str, TestResult]:
    return {r.name: r for r in results}


def ladder_tests(
    ref: list[Observation], provider: list[Observation], window: int | None = WINDOW
) -> dict[str, TestResult]:
    return by_name([c.result for c in ladder_comparisons(ref, provider, window)])


def judged(
    provider: list[Observation],
    window: int | None = WINDOW,
    ref: list[Observation] | None = None,
    looks: int = 3,
) -> Finding:
    errors = sum(not o.ok for o in provider)
    record = ProviderRecord("m", "p", len(provider), errors, 0)
    policy = VerdictPolicy(looks=looks)
    return assess(
        record,
        "reference",
        ref or reference(),
        provider,
        [],
        policy,
        {},
        "t",
        context_window=window,
    )


def test_an_honest_provider_gets_the_top_rung_and_no_rejection() -> None:
    tests = ladder_tests(reference(), honest())
    window = tests["ladder:effective_window"]
    assert window.status == "figure" and window.p_value is None
    assert (window.statistic, window.n) == (3968, 6)
    assert window.note is not None and window.note.startswith(
        "answers like the reference up to 3,968 tokens (confirmed to 3,968), the top of the "
        "ladder; declared 8,192; rungs (tokens, verdict, provider passed/tried against the "
        "reference's): 496 match, 12/12 against 12/12 p 1.000 confirmed; 992 match"
    )
    assert tests["ladder:lower_bound"].statistic == 3968
    breaks = tests["ladder:breaks"]
    assert (breaks.p_value, breaks.effect, breaks.statistic, breaks.n) == (1.0, 0.0, None, 6)
    finding = judged(honest())
    assert (finding.verdict, finding.diagnoses) == ("consistent", [])


def test_a_provider_failing_every_task_from_rung_4_breaks_there() -> None:
    provider = [answer(t, r, s, passed=r < 4) for t, r, s in every_request()]
    tests = ladder_tests(reference(), provider)
    breaks = tests["ladder:breaks"]
    summary = (
        "answers like the reference up to 1,984 tokens (confirmed to 1,984); fails "
        "aggregation, retrieval and variable tracking at 2,976 tokens (pass rate 0.00 "
        "against the reference's 1.00, p < 0.001)"
    )
    assert breaks.note == summary and breaks.statistic == 2976
    assert breaks.p_value is not None and breaks.p_value < 0.01
    assert breaks.effect == pytest.approx(1984 / 3968 - 1)
    assert tests["ladder:effective_window"].statistic == 1984
    assert tests["ladder:lower_bound"].statistic == 1984
    # Through the judging layer: the rule names context_truncation first, with the summary.
    finding = judged(provider)
    assert finding.verdict == "deviant" and finding.severity == "critical"
    assert finding.diagnoses[0].kind == "context_truncation"
    assert finding.diagnoses[0].summary == summary


def test_the_summary_names_the_tasks_that_fail() -> None:
    # retrieval fails from rung 2 (6 of 12, p 0.0068: Holm's ALPHA / 4 once rungs 4 and 5
    # have failed every task)
    provider = [
        answer(t, r, s, passed=r < 2 or (r < 4 and t not in ("needle", "multikey")))
        for t, r, s in every_request()
    ]
    (breaks,) = [t for t in ladder_tests(reference(), provider).values() if t.p_value is not None]
    assert breaks.note is not None and "; fails retrieval at 1,488 tokens (pass rate 0.50" in (
        breaks.note
    )


def test_each_rung_carries_its_counts_task_by_task() -> None:
    provider = [answer(t, r, s, passed=t != "needle" or r < 4) for t, r, s in every_request()]
    found = ladder_window(reference(), provider)
    assert found is not None
    tasks = {t.task: t for t in found[0].rungs[4].result.tasks}
    assert set(tasks) == {"needle", "multikey", "variable_tracking", "aggregation"}
    assert tasks["needle"] == TaskCounts("needle", 0, SAMPLES, SAMPLES, SAMPLES)
    assert tasks["multikey"] == TaskCounts("multikey", SAMPLES, SAMPLES, SAMPLES, SAMPLES)


def test_a_ladder_case_without_a_task_is_counted_pooled_and_under_no_name() -> None:
    def untasked(o: Observation) -> Observation:
        meta = {k: v for k, v in o.case["metadata"].items() if k != "task"}
        return dataclasses.replace(o, case={**o.case, "metadata": meta})

    ref = [untasked(o) if o.case["metadata"]["task"] == "needle" else o for o in reference()]
    provider = [untasked(o) if o.case["metadata"]["task"] == "needle" else o for o in honest()]
    found = ladder_window(ref, provider)
    assert found is not None
    rung = found[0].rungs[0].result
    assert {t.task for t in rung.tasks} == {"", "multikey", "variable_tracking", "aggregation"}
    assert rung.provider_tried == 4 * SAMPLES and found[0].break_at is None


def test_a_provider_refusing_from_rung_5_below_the_declared_window_breaks_there() -> None:
    provider = [
        error(t, r, s, "context_length_exceeded") if r >= 5 else answer(t, r, s)
        for t, r, s in every_request()
    ]
    found = ladder_window(reference(), provider, WINDOW)
    assert found is not None
    window, k, _ = found
    assert (window.length, window.break_at, window.reason, k) == (2976, 3968, "refused", 6)
    breaks = ladder_tests(reference(), provider)["ladder:breaks"]
    assert (breaks.p_value, breaks.statistic) == (0.0, 3968)
    assert breaks.note == (
        "answers like the reference up to 2,976 tokens (confirmed to 2,976); refuses prompts "
        "of 3,968 tokens (context length exceeded)"
    )
    # Without a declared window every refusal of a prompt the reference answered counts.
    assert ladder_tests(reference(), provider, window=None)["ladder:breaks"].p_value == 0.0
    finding = judged(provider)
    assert finding.verdict == "deviant" and finding.diagnoses[0].kind == "context_truncation"


def test_refusals_above_the_declared_window_are_the_providers_right() -> None:
    provider = [
        error(t, r, s, "context_length_exceeded") if r >= 5 else answer(t, r, s)
        for t, r, s in every_request()
    ]
    # 3,968 tokens and the 32 the request asks for do not fit 3,999: not counted; the rung
    # has no scored answer, so nothing is known of it and the top judged rung is 2,976.
    tests = ladder_tests(reference(), provider, window=3999)
    assert (tests["ladder:breaks"].p_value, tests["ladder:breaks"].effect) == (1.0, 0.0)
    assert tests["ladder:effective_window"].statistic == 2976
    assert tests["ladder:effective_window"].n == 5
    note = tests["ladder:effective_window"].note or ""
    assert "the longest rung judged; declared 3,999" in note
    assert note.endswith("3,968 unknown, 12 errors")
    # ... as are refusals of prompts the reference refused too.
    ref = [
        error(t, r, s, "context_length_exceeded", endpoint="reference")
        if r >= 5
        else answer(t, r, s, endpoint="reference")
        for t, r, s in every_request()
    ]
    assert ladder_tests(ref, provider)["ladder:breaks"].p_value == 1.0


def test_answers_billed_short_on_rung_3_break_there() -> None:
    provider = [
        answer(t, r, s, prompt_tokens=LENGTHS[r] - 3 if (r, t, s) == (3, "needle", 1) else None)
        if r == 3
        else answer(t, r, s)
        for t, r, s in every_request()
    ]
    breaks = ladder_tests(reference(), provider)["ladder:breaks"]
    assert (breaks.p_value, breaks.statistic) == (0.0, 1984)
    assert breaks.note is not None and breaks.note.endswith(
        "drops part of prompts of 1,984 tokens (1 of 12 answers billed short of the "
        "prompt's length)"
    )
    # Within the tolerance, or without usage, an answer is not billed short.
    within = [
        answer(t, r, s, prompt_tokens=LENGTHS[r] - 2 if r == 3 else LENGTHS[r])
        for t, r, s in every_request()
    ]
    assert ladder_tests(reference(), within)["ladder:breaks"].p_value == 1.0
    unbilled = [answer(t, r, s, prompt_tokens=None) for t, r, s in every_request()]
    assert ladder_tests(reference(), unbilled)["ladder:breaks"].p_value == 1.0


def test_one_borderline_rung_among_six_does_not_break_the_ladder() -> None:
    # At rung 2 the reference passes 9 of 12 and the provider 3 of 12: pooled Boschloo p
    # 0.011, the rung's p 0.023 (twice that; no task alone is below 0.016, times 8): a break
    # at level 0.05, not at 0.05 / 6.
    ref = [
        answer(t, r, s, passed=r != 2 or t != "needle", endpoint="reference")
        for t, r, s in every_request()
    ]
    failing = {(t, s) for t in ("needle", "multikey", "variable_tracking") for s in range(SAMPLES)}
    provider = [
        answer(t, r, s, passed=r != 2 or (t, s) not in failing) for t, r, s in every_request()
    ]
    found = ladder_window(ref, provider)
    assert found is not None
    window, k, _ = found
    p = window.rungs[2].p_value
    assert p is not None and 0.022 < p < 0.024
    assert (window.length, window.break_at, k) == (3968, None, 6)
    breaks = ladder_tests(ref, provider)["ladder:breaks"]
    assert breaks.p_value == pytest.approx(6 * p) and breaks.effect == 0.0
    # Without the correction the same ladder would break at that rung.
    uncorrected = effective_window([v.result for v in window.rungs], alpha=ALPHA)
    assert uncorrected.break_at == 1488


def test_a_rung_failing_less_clearly_below_two_clear_failures_is_where_it_breaks() -> None:
    # Rungs 4 and 5 fail every task; rung 3 fails both retrieval tasks, passing 6 of 12
    # against the reference's 12 of 12 (the rung's p 0.0068): above ALPHA / 6, so Bonferroni
    # would break at rung 4, but Holm tests it at ALPHA / 4 once the two longer rungs failed.
    ref = reference()
    failing = {(t, s) for t in ("needle", "multikey") for s in range(SAMPLES)}
    provider = [
        answer(t, r, s, passed=r < 3 or (r == 3 and (t, s) not in failing))
        for t, r, s in every_request()
    ]
    found = ladder_window(ref, provider)
    assert found is not None
    window, k, _ = found
    p = window.rungs[3].p_value
    assert p is not None and ALPHA / 6 < p < ALPHA / 4
    assert (window.length, window.break_at, window.reason, k) == (1488, 1984, "pass_rate", 6)
    assert effective_window([v.result for v in window.rungs], alpha=ALPHA / 6).break_at == 2976
    breaks = ladder_tests(ref, provider)["ladder:breaks"]
    assert breaks.statistic == 1984 and breaks.effect == pytest.approx(1488 / 3968 - 1)


def test_the_rule_reads_the_test() -> None:
    provider = [answer(t, r, s, passed=r < 4) for t, r, s in every_request()]
    comparisons = ladder_comparisons(reference(), provider, WINDOW)
    (breaks,) = [c for c in comparisons if c.result.name == "ladder:breaks"]
    rule = rules.get("context_truncation.ladder_breaks")
    readings = Readings([Rejection(breaks, 1e-4)], comparisons)
    rejection = rule.match(readings)
    assert rejection is not None and (rule.kind, rule.weight) == ("context_truncation", 0.9)
    assert rule.describe(rejection, readings) == breaks.result.note


def test_rung_lengths_fall_back_to_the_target_without_the_references_count() -> None:
    ref = [answer(t, r, s, endpoint="reference", prompt_tokens=None) for t, r, s in every_request()]
    tests = ladder_tests(ref, honest())
    assert tests["ladder:effective_window"].statistic == TARGETS[-1]


def test_no_rung_judged_is_not_available() -> None:
    provider = [error(t, r, s, "server_error") for t, r, s in every_request()]
    (only,) = ladder_tests(reference(), provider).values()
    assert (only.name, only.status, only.n) == ("ladder:effective_window", "not_available", 0)
    assert only.note == "no rung of the ladder could be judged (no scored answers)"


def test_a_provider_without_ladder_answers_gets_nothing() -> None:
    plain_ref = [
        observation(i, endpoint="reference", scores={"expect_pass": 1.0}) for i in range(20)
    ]
    plain = [observation(i, scores={"expect_pass": 0.0}) for i in range(20)]
    assert ladder_comparisons(plain_ref, plain, WINDOW) == []
    assert LadderComparator().compare(ComparisonInput(reference(), plain)) == []
    # ... and the reference's ladder answers alone are no ladder of the provider's.
    assert ladder_comparisons(reference(), [], WINDOW) == []


def test_the_ladder_level_is_the_one_the_verdict_tests_it_at() -> None:
    assert VERDICT_ALPHA * alpha_shares.get("ladder:breaks") == ALPHA


@pytest.mark.parametrize(("looks", "breaks"), [(1, True), (3, False)])
def test_the_window_is_read_at_the_level_the_verdict_tests_it(looks: int, breaks: bool) -> None:
    # Rung 3 passes 4 of 12 against the reference's 11 of 12 (the rung's p 0.0033, Holm's
    # 0.0197): below the ladder's 0.04 in one look, above its 0.04 / 3 with three looks.
    ref = [
        answer(t, r, s, passed=(t, r, s) != ("aggregation", 3, 0), endpoint="reference")
        for t, r, s in every_request()
    ]
    failing = {(t, s) for t in ("needle", "multikey") for s in range(SAMPLES)}
    failing |= {("variable_tracking", 0), ("variable_tracking", 1)}
    provider = [
        answer(t, r, s, passed=r != 3 or (t, s) not in failing) for t, r, s in every_request()
    ]
    finding = judged(provider, ref=ref, looks=looks)
    window = finding.context_window
    assert window is not None
    p = next(t.p_value for t in finding.tests if t.name == "ladder:breaks")
    assert p == pytest.approx(0.0197, abs=1e-4)
    assert (window.breaks_at == 1984) is breaks
    assert (window.effective == (1488 if breaks else 3968)) and window.lower_bound == 1488
    truncation = [d for d in finding.diagnoses if d.kind == "context_truncation"]
    assert (finding.verdict == "deviant") is breaks and bool(truncation) is breaks
