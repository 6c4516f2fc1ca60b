"""auditor.stats.ladder: where the window stops and why, the Boschloo orientation, Newcombe's
interval against the published values, Holm's step-down across the rungs, rungs of several
tasks tested pooled and task by task, and the lower bound never passing the window."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from auditor.stats import RungResult, effective_window, newcombe_interval, wilson_interval
from auditor.stats import ladder as ladder_module
from auditor.stats.ladder import TaskCounts, judge_rung, rung_pass_rate_p, worse_pass_rate_p

LENGTHS = (256, 512, 1024, 2048, 4096, 8192)


def rung(
    length: int,
    provider: tuple[int, int],
    reference: tuple[int, int] = (20, 20),
    **counts: int,
) -> RungResult:
    return RungResult(length, *provider, *reference, **counts)


def test_a_provider_equal_to_the_reference_gets_the_top_rung() -> None:
    ladder = [rung(n, (18, 20), (18, 20)) for n in LENGTHS]
    window = effective_window(ladder)
    assert window.length == LENGTHS[-1]
    assert window.lower_bound == LENGTHS[-1]  # 20 tasks a rung confirm a 0.25 margin
    assert window.break_at is None and window.reason is None
    assert [r.status for r in window.rungs] == ["match"] * len(LENGTHS)
    assert window.summary() == (
        "answers like the reference up to 8,192 tokens (confirmed to 8,192), the top of the ladder"
    )


def test_a_collapse_at_rung_4_stops_the_window_at_rung_3() -> None:
    ladder = [rung(n, (20, 20)) for n in LENGTHS[:3]]
    ladder += [rung(n, (3, 20)) for n in LENGTHS[3:]]
    window = effective_window(ladder)
    assert (window.length, window.break_at, window.reason) == (1024, 2048, "pass_rate")
    assert window.lower_bound == 1024
    broken = window.rungs[3]
    assert broken.status == "fail" and broken.p_value is not None and broken.p_value < 1e-6
    assert broken.difference == pytest.approx(-0.85)
    assert window.summary(task="retrieval") == (
        "answers like the reference up to 1,024 tokens (confirmed to 1,024); fails retrieval at "
        "2,048 tokens (pass rate 0.15 against the reference's 1.00, p < 0.001)"
    )


def test_rungs_are_read_in_length_order_whatever_the_input_order() -> None:
    ladder = [rung(n, (20, 20) if n < 2048 else (3, 20)) for n in LENGTHS]
    assert effective_window(ladder[::-1]) == effective_window(ladder)


def test_a_refusal_breaks_the_window_even_when_pass_rates_match() -> None:
    ladder = [rung(n, (20, 20)) for n in LENGTHS]
    ladder[2] = rung(1024, (20, 20), refused=1)
    window = effective_window(ladder)
    assert (window.length, window.break_at, window.reason) == (512, 1024, "refused")
    assert window.summary().endswith("refuses prompts of 1,024 tokens (context length exceeded)")


def test_a_refusal_with_no_scored_answer_is_a_failure_not_an_unknown() -> None:
    ladder = [rung(256, (20, 20)), rung(512, (0, 0), refused=20)]
    window = effective_window(ladder)
    assert window.rungs[1].status == "fail" and window.rungs[1].p_value is None
    assert (window.length, window.break_at, window.reason) == (256, 512, "refused")


def test_billed_short_wins_over_the_pass_rate() -> None:
    ladder = [rung(256, (20, 20)), rung(512, (2, 20), billed_short=4)]
    window = effective_window(ladder)
    assert window.rungs[1].p_value is not None and window.rungs[1].p_value < 0.05
    assert (window.break_at, window.reason) == (512, "billed_short")
    assert "drops part of prompts of 512 tokens (4 of 20 answers" in window.summary()


def test_refused_wins_over_billed_short() -> None:
    window = effective_window([rung(256, (2, 20), refused=1, billed_short=3)])
    assert window.reason == "refused"


def test_unknown_rungs_are_skipped() -> None:
    ladder = [rung(n, (20, 20)) for n in LENGTHS]
    ladder[1] = rung(512, (0, 0), errors=20)  # every request errored
    ladder[5] = rung(8192, (20, 20), (0, 0))  # the reference has nothing at this length
    window = effective_window(ladder)
    assert [r.status for r in window.rungs] == ["match", "unknown"] + ["match"] * 3 + ["unknown"]
    assert window.rungs[1].p_value is None and window.rungs[1].difference is None
    assert (window.length, window.lower_bound, window.break_at) == (4096, 4096, None)
    assert window.summary().endswith(", the longest rung judged")


def test_an_unknown_rung_before_the_break_does_not_extend_the_window() -> None:
    ladder = [rung(256, (20, 20)), rung(512, (0, 0), errors=5), rung(1024, (0, 20))]
    window = effective_window(ladder)
    assert (window.length, window.break_at) == (256, 1024)


def test_an_all_unknown_ladder_says_nothing() -> None:
    window = effective_window([rung(n, (0, 0), errors=3) for n in LENGTHS[:3]])
    assert (window.length, window.lower_bound, window.break_at, window.reason) == (None,) * 4
    assert "no rung" in window.summary()


def test_a_failing_first_rung_is_below_the_ladder() -> None:
    ladder = [rung(n, (0, 20)) for n in LENGTHS[:3]]
    window = effective_window(ladder)
    assert (window.length, window.lower_bound, window.break_at) == (None, None, 256)
    assert window.summary().startswith("answers like the reference at no rung of the ladder; ")


def test_tiny_samples_match_but_do_not_confirm() -> None:
    window = effective_window([rung(n, (1, 1), (1, 1)) for n in LENGTHS[:3]])
    assert (window.length, window.break_at) == (1024, None)
    assert window.lower_bound is None
    assert all(r.status == "match" and not r.confirmed for r in window.rungs)
    assert "(not confirmed at any rung)" in window.summary()


def test_confirmation_stops_at_the_first_unconfirmed_rung() -> None:
    # 20 tasks, then 2: the match holds on, the confirmation does not
    ladder = [rung(256, (20, 20)), rung(512, (2, 2), (2, 2)), rung(1024, (20, 20))]
    window = effective_window(ladder)
    assert (window.length, window.lower_bound) == (1024, 256)
    assert window.rungs[2].confirmed  # confirmed on its own, but the chain is broken


def test_a_provider_much_better_than_the_reference_never_fails() -> None:
    # provider first: H0 is p_provider >= p_reference, so only a worse provider is rejected
    ladder = [rung(n, (20, 20), (1, 20)) for n in LENGTHS]
    window = effective_window(ladder)
    assert (window.length, window.break_at) == (LENGTHS[-1], None)
    assert all(r.p_value is not None and r.p_value > 0.99 for r in window.rungs)
    assert all(r.difference == pytest.approx(0.95) for r in window.rungs)
    # and the mirror image fails at once
    assert effective_window([rung(256, (1, 20), (20, 20))]).reason == "pass_rate"


# A cut keeping the last 496 tokens, billed as sent (bench start 209): the two longest rungs
# lose a third and more of their prompt; six rungs of 12 answers a side.
CUT_AT_496 = [
    rung(146, (9, 12), (9, 12)),
    rung(250, (8, 12), (8, 12)),
    rung(450, (11, 12), (11, 12)),
    rung(848, (7, 12), (8, 12)),
    rung(1256, (2, 12), (8, 12)),  # Boschloo p 0.0084: above 0.05 / 6, below 0.05 / 5
    rung(1582, (2, 12), (9, 12)),  # p 0.0033
]


def test_holm_places_a_cut_where_bonferroni_passes_the_rung_below_the_clearest_failure() -> None:
    bonferroni = effective_window(CUT_AT_496, alpha=0.05 / 6)
    holm = effective_window(CUT_AT_496, alpha=0.05, multiplicity="holm")
    assert (bonferroni.length, bonferroni.break_at) == (1256, 1582)
    assert (holm.length, holm.break_at, holm.reason) == (848, 1256, "pass_rate")
    assert [v.status for v in holm.rungs] == ["match"] * 4 + ["fail"] * 2
    # the raw p-values are kept; only the decision is the step-down's
    assert holm.rungs[4].p_value == bonferroni.rungs[4].p_value
    # A borderline rung below (p 0.021) breaks an uncorrected ladder there; Holm tests it at
    # 0.05 / 4 once the two longest rungs have failed, and passes it.
    borderline = [CUT_AT_496[0], rung(250, (5, 12), (10, 12)), *CUT_AT_496[2:]]
    assert effective_window(borderline, alpha=0.05).break_at == 250
    assert effective_window(borderline, alpha=0.05, multiplicity="holm").break_at == 1256


def two_tasks(length: int, needle: tuple[int, int], multikey: tuple[int, int]) -> RungResult:
    """A rung of 6 needles and 6 two-key questions a side: (provider, reference) passed."""
    tasks = (
        TaskCounts("needle", needle[0], 6, needle[1], 6),
        TaskCounts("multikey", multikey[0], 6, multikey[1], 6),
    )
    return RungResult(length, needle[0] + multikey[0], 12, needle[1] + multikey[1], 12, tasks=tasks)


# Bench start 221's cut keeping the last 652 tokens, billed as sent: from about 850 tokens on
# the needle (the text's first line) is gone, and with the first key gone too, the other key
# is answered without its distractor, better than the reference does.
CUT_AT_652 = [
    two_tasks(146, (6, 6), (3, 3)),
    two_tasks(250, (6, 6), (2, 2)),
    two_tasks(450, (6, 6), (5, 5)),
    two_tasks(848, (0, 6), (5, 2)),  # 5 of 12 against 8 of 12 pooled: p 0.15
    two_tasks(1256, (0, 6), (2, 3)),
    two_tasks(1582, (0, 6), (2, 4)),
]


def test_a_cut_that_loses_one_task_and_helps_another_fails_the_rung() -> None:
    assert worse_pass_rate_p(5, 12, 8, 12) > 0.15
    lost = worse_pass_rate_p(0, 6, 6, 6)
    assert rung_pass_rate_p(CUT_AT_652[3]) == pytest.approx(4 * lost)  # 2m x, m = 2 tasks
    window = effective_window(CUT_AT_652, multiplicity="holm")
    assert (window.length, window.break_at, window.reason) == (450, 848, "pass_rate")
    pooled_only = effective_window([replace(r, tasks=()) for r in CUT_AT_652], multiplicity="holm")
    assert (pooled_only.length, pooled_only.break_at) == (848, 1256)
    # the rung's rates stay pooled
    assert window.rungs[3].provider_rate == pytest.approx(5 / 12)


def test_a_rung_of_one_task_or_one_comparable_task_is_tested_pooled() -> None:
    plain = rung(512, (4, 12), (10, 12))
    assert rung_pass_rate_p(plain) == worse_pass_rate_p(4, 12, 10, 12)
    one = replace(plain, tasks=(TaskCounts("needle", 4, 12, 10, 12),))
    assert rung_pass_rate_p(one) == worse_pass_rate_p(4, 12, 10, 12)
    # the multikey questions all errored on the provider's side: nothing to compare there
    half = RungResult(
        512, 0, 6, 6, 12,
        tasks=(TaskCounts("needle", 0, 6, 6, 6), TaskCounts("multikey", 0, 0, 0, 6)),
    )  # fmt: skip
    assert rung_pass_rate_p(half) == worse_pass_rate_p(0, 6, 6, 12)


def test_a_difference_spread_over_the_tasks_is_still_seen_pooled() -> None:
    # each task 3 of 6 against 6 of 6: neither alone reaches 0.05 (times 4), their sum does
    both = two_tasks(512, (3, 6), (3, 6))
    assert 4 * worse_pass_rate_p(3, 6, 6, 6) > 0.05
    assert rung_pass_rate_p(both) == pytest.approx(2 * worse_pass_rate_p(6, 12, 12, 12))
    assert judge_rung(both).reason == "pass_rate"


def test_a_rung_of_two_tasks_fails_at_most_alpha_of_honest_rungs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both sides draw each task's 6 answers from the same pass rate (0.3-0.7, where the
    tests have the most room to err): the rung's test rejects at most alpha of them
    (simulated; taking the smallest of the three p-values uncorrected rejects about 8%)."""
    cached = functools.lru_cache(maxsize=None)(worse_pass_rate_p)
    monkeypatch.setattr(ladder_module, "worse_pass_rate_p", cached)
    rng = np.random.default_rng(7)
    n = 4000
    rates = rng.uniform(0.3, 0.7, size=(n, 2))
    counts = rng.binomial(6, np.repeat(rates[:, None, :], 2, axis=1))  # rung, side, task
    rejected = sum(
        rung_pass_rate_p(two_tasks(512, (int(c[0, 0]), int(c[1, 0])), (int(c[0, 1]), int(c[1, 1]))))
        <= 0.05
        for c in counts
    )
    assert rejected / n <= 0.05 + 2 * (0.05 * 0.95 / n) ** 0.5


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 12), st.integers(0, 12), st.booleans()), min_size=1, max_size=6
    )
)
def test_holm_breaks_a_ladder_exactly_when_bonferroni_does_and_never_higher(
    counts: list[tuple[int, int, bool]],
) -> None:
    ladder = [
        rung(LENGTHS[i], (p, 12), (r, 12), billed_short=int(short))
        for i, (p, r, short) in enumerate(counts)
    ]
    bonferroni = effective_window(ladder, alpha=0.05 / len(ladder))
    holm = effective_window(ladder, alpha=0.05, multiplicity="holm")
    assert (holm.break_at is None) == (bonferroni.break_at is None)
    if holm.break_at is not None:
        assert bonferroni.break_at is not None and holm.break_at <= bonferroni.break_at
    assert holm.lower_bound == effective_window(ladder, alpha=0.05).lower_bound


@pytest.mark.parametrize(
    ("provider", "reference"),
    [((5, 20), (10, 12)), ((2, 12), (10, 12)), ((0, 3), (9, 10)), ((7, 7), (3, 9))],
)
def test_the_boschloo_table_has_the_provider_as_its_first_column(
    provider: tuple[int, int], reference: tuple[int, int]
) -> None:
    (kp, np_), (kr, nr) = provider, reference
    p = worse_pass_rate_p(kp, np_, kr, nr)
    expected = stats.boschloo_exact([[kp, kr], [np_ - kp, nr - kr]], alternative="less").pvalue
    assert p == pytest.approx(expected)
    # Boschloo is uniformly more powerful than Fisher's test of the same table
    fisher = stats.fisher_exact([[kp, kr], [np_ - kp, nr - kr]], alternative="less").pvalue
    assert p <= fisher + 1e-12


def test_the_boschloo_p_value_is_exact_on_a_table_small_enough_to_check_by_hand() -> None:
    # 0 of 1 against 1 of 1: nothing is more extreme, P = max_p (1 - p) p = 1/4
    assert worse_pass_rate_p(0, 1, 1, 1) == pytest.approx(0.25, abs=1e-6)
    # every answer right on both sides: no evidence at all (the transposed table gives NaN)
    assert worse_pass_rate_p(5, 5, 5, 5) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("counts", "low", "high"),
    [  # Newcombe (1998), Statistics in Medicine 17:873-890, Table II, method 10
        ((56, 70, 48, 80), 0.0524, 0.3339),
        ((9, 10, 3, 10), 0.1705, 0.8090),
        ((5, 56, 0, 29), -0.0381, 0.1926),
        ((0, 10, 0, 20), -0.1611, 0.2775),
        ((10, 10, 0, 20), 0.6791, 1.0000),
    ],
)
def test_newcombe_interval_matches_the_published_values(
    counts: tuple[int, int, int, int], low: float, high: float
) -> None:
    got_low, got_high = newcombe_interval(*counts, confidence=0.95)
    assert round(got_low, 3) == round(low, 3)
    assert round(got_high, 3) == round(high, 3)


def test_wilson_interval_matches_the_published_value() -> None:
    # Newcombe (1998), Statistics in Medicine 17:857-872, Table I: 81 of 263, method 3
    low, high = wilson_interval(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(0, 5)[0] == 0.0 and wilson_interval(5, 5)[1] == 1.0


def test_the_rung_lower_bound_is_one_sided_at_alpha() -> None:
    verdict = judge_rung(rung(256, (56, 70), (48, 80)), alpha=0.025)
    assert verdict.lower == pytest.approx(newcombe_interval(56, 70, 48, 80, 0.95)[0])


def test_a_wider_margin_confirms_further() -> None:
    ladder = [rung(n, (8, 10), (9, 10)) for n in LENGTHS[:3]]
    assert effective_window(ladder, margin=0.1).lower_bound is None
    assert effective_window(ladder, margin=0.6).lower_bound == 1024


@st.composite
def ladders(draw: st.DrawFn) -> list[RungResult]:
    lengths = draw(st.lists(st.integers(1, 200_000), min_size=1, max_size=5, unique=True))
    out = []
    for length in lengths:
        provider_tried = draw(st.integers(0, 12))
        reference_tried = draw(st.integers(0, 12))
        out.append(
            RungResult(
                length=length,
                provider_passed=draw(st.integers(0, provider_tried)),
                provider_tried=provider_tried,
                reference_passed=draw(st.integers(0, reference_tried)),
                reference_tried=reference_tried,
                refused=draw(st.sampled_from([0] * 8 + [1])),
                errors=draw(st.integers(0, 3)),
                billed_short=draw(st.sampled_from([0] * 8 + [2])),
            )
        )
    return out


@settings(max_examples=60, deadline=None)
@given(ladders(), st.sampled_from([0.01, 0.05, 0.2]), st.sampled_from([0.1, 0.25, 0.6]))
def test_the_lower_bound_never_exceeds_the_window(
    ladder: list[RungResult], alpha: float, margin: float
) -> None:
    window = effective_window(ladder, alpha=alpha, margin=margin)
    if window.lower_bound is not None:
        assert window.length is not None and window.lower_bound <= window.length
    if window.length is not None and window.break_at is not None:
        assert window.length < window.break_at
    known = [r for r in window.rungs if r.status != "unknown"]
    if window.break_at is not None:
        first_fail = next(r for r in known if r.status == "fail")
        assert (first_fail.length, first_fail.reason) == (window.break_at, window.reason)
    elif known:
        assert window.length == known[-1].length
    assert isinstance(window.summary(), str)


@pytest.mark.parametrize(
    "make",
    [
        lambda: RungResult(256, 3, 2, 1, 1),  # provider passed > tried
        lambda: RungResult(256, 1, 1, 5, 4),  # reference passed > tried
        lambda: RungResult(256, 1, 1, 1, 1, refused=-1),
        lambda: RungResult(256, -1, 1, 1, 1),
        lambda: RungResult(0, 1, 1, 1, 1),
        lambda: RungResult(256, 1, 2, 1, 1, tasks=(TaskCounts("needle", 1, 1, 1, 1),)),
        lambda: TaskCounts("needle", 2, 1, 1, 1),
        lambda: effective_window([RungResult(256, 1, 1, 1, 1), RungResult(256, 0, 1, 1, 1)]),
        lambda: effective_window([]),
        lambda: effective_window([RungResult(256, 1, 1, 1, 1)], alpha=0.0),
        lambda: effective_window([RungResult(256, 1, 1, 1, 1)], alpha=0.5),
        lambda: effective_window([RungResult(256, 1, 1, 1, 1)], margin=-0.1),
        lambda: newcombe_interval(1, 0, 1, 1),
    ],
)
def test_invalid_inputs_raise(make: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        make()
