"""auditor.stats: known answers, false-alarm rates under simulated nulls, power under effects.

Every simulation is seeded. A false-alarm check asserts that the observed rejection rate is
compatible with alpha: its 99.9% Clopper-Pearson interval must reach down to alpha (not
significantly too many alarms) and, for tests that are exact rather than conservative, up
to alpha (not uselessly conservative).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable

import numpy as np
import pytest
from scipy import stats as sps

from auditor.stats import (
    PAD,
    TestOutcome,
    benjamini_hochberg,
    bh_adjust,
    cliffs_delta,
    clopper_pearson,
    encode_completions,
    fisher_combine,
    holm_adjust,
    honest_range,
    mean_shift_test,
    mmd_hamming_test,
    paired_shift_test,
    per_look_alpha,
    proportion_test,
    rank_of,
    rank_uniformity_test,
    ranks_of,
    sequential_decision,
    shared_bh_adjust,
)

ALPHA = 0.05
SIMULATIONS = 300


def rejection_rate(p_values: list[float], alpha: float = ALPHA) -> tuple[int, int]:
    return sum(p <= alpha for p in p_values), len(p_values)


def assert_false_alarm_rate(p_values: list[float], exact: bool = True) -> None:
    k, n = rejection_rate(p_values)
    low, high = clopper_pearson(k, n, confidence=0.999)
    assert low <= ALPHA, f"{k}/{n} false alarms: too many for alpha={ALPHA}"
    if exact:
        assert high >= ALPHA, f"{k}/{n} false alarms: too conservative for alpha={ALPHA}"


def assert_power(p_values: list[float], at_least: float) -> None:
    k, n = rejection_rate(p_values)
    assert k / n >= at_least, f"power {k}/{n} below {at_least}"


def simulate(run: Callable[[np.random.Generator], float], seed: int, times: int) -> list[float]:
    rng = np.random.default_rng(seed)
    return [run(rng) for _ in range(times)]


# ---------------------------------------------------------------- TestOutcome


def test_outcome_rejects_nan_and_clips_p() -> None:
    with pytest.raises(ValueError):
        TestOutcome(statistic=math.nan, p_value=0.5, effect=0.0, n=3)
    outcome = TestOutcome(statistic=np.float64(1.0), p_value=1.0000000002, effect=0, n=3)
    assert outcome.p_value == 1.0
    assert isinstance(outcome.statistic, float)


# ---------------------------------------------------------------- MMD, Hamming kernel

# A toy "language model": per prompt and position, a categorical over tokens 1..V-1 plus
# token 0 = end of sequence. Temperature rescales the logits; `cap` truncates (max_tokens).
VOCAB, LENGTH, PROMPTS = 6, 12, 4
TOY_LOGITS = np.random.default_rng(2024).normal(0.0, 1.5, size=(PROMPTS, LENGTH, VOCAB))
TOY_LOGITS[:, :, 0] -= 1.5  # ends are rarer than other tokens


def toy_completions(
    rng: np.random.Generator, per_prompt: int, temperature: float = 1.0, cap: int | None = None
) -> tuple[list[list[int]], list[int]]:
    probs = np.exp(TOY_LOGITS / temperature)
    cdf = np.cumsum(probs / probs.sum(axis=2, keepdims=True), axis=2)
    completions, groups = [], []
    for prompt in range(PROMPTS):
        u = rng.random((per_prompt, LENGTH, 1))
        tokens = np.minimum((u > cdf[prompt][None]).sum(axis=2), VOCAB - 1)
        for row in tokens:
            end = int(np.argmax(row == 0)) if np.any(row == 0) else LENGTH
            completions.append(row[: min(end, cap or LENGTH)].tolist())
            groups.append(prompt)
    return completions, groups


def toy_mmd_p(
    rng: np.random.Generator, per_prompt: int = 8, temperature: float = 1.0, cap: int | None = None
) -> float:
    x, gx = toy_completions(rng, per_prompt)
    y, gy = toy_completions(rng, per_prompt, temperature, cap)
    outcome = mmd_hamming_test(
        x, y, x_groups=gx, y_groups=gy, length=LENGTH, n_permutations=199, rng=rng
    )
    return outcome.p_value


def test_encoding_pads_truncates_and_maps_tokens() -> None:
    enc = encode_completions(["ab", "abcd"], length=3)
    assert enc.tolist() == [[97, 98, PAD], [97, 98, 99]]
    vocab: dict = {}
    a = encode_completions([["he", "llo"]], 3, vocab)
    b = encode_completions([["he", "y"]], 3, vocab)
    assert a[0, 0] == b[0, 0] and a[0, 1] != b[0, 1] and a[0, 2] == PAD
    with pytest.raises(ValueError):
        encode_completions([[-3, 1]], 2)


def test_mmd_known_values() -> None:
    rng = np.random.default_rng(0)
    # Disjoint: kernel 1 within each side, 0 across: MMD^2 = 1 + 1 - 0.
    assert mmd_hamming_test(["ab", "ab"], ["cd", "cd"], length=2, rng=rng).statistic == 2.0
    # Padding is a symbol: "a" vs "abc" agree on 1 of 3 positions: 1 + 1 - 2/3.
    outcome = mmd_hamming_test(["a", "a"], ["abc", "abc"], length=3, rng=rng)
    assert outcome.statistic == pytest.approx(4 / 3)
    assert outcome.effect == outcome.statistic and outcome.n == 4
    # With 2 + 2 samples, only 2 of the 6 labellings are as extreme: p = (1 + 2/6 * B) / (1 + B).
    assert outcome.p_value == pytest.approx(1 / 3, abs=0.05)


def test_mmd_matches_brute_force_unbiased_statistic() -> None:
    rng = np.random.default_rng(5)
    x = [rng.integers(0, 3, size=rng.integers(0, 7)).tolist() for _ in range(7)]
    y = [rng.integers(0, 4, size=rng.integers(0, 7)).tolist() for _ in range(5)]
    ex, ey = encode_completions(x, 6), encode_completions(y, 6)

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.mean(a == b))

    kxx = np.mean([k(ex[i], ex[j]) for i in range(7) for j in range(7) if i != j])
    kyy = np.mean([k(ey[i], ey[j]) for i in range(5) for j in range(5) if i != j])
    kxy = np.mean([k(a, b) for a in ex for b in ey])
    expected = kxx + kyy - 2 * kxy
    assert mmd_hamming_test(x, y, length=6, rng=rng).statistic == pytest.approx(expected)


def test_mmd_compares_completions_only_within_a_prompt() -> None:
    # Each prompt has one deterministic answer on both sides; only the prompt mix differs.
    x = ["aaaa"] * 10 + ["bbbb"] * 2
    y = ["aaaa"] * 2 + ["bbbb"] * 10
    gx = ["p"] * 10 + ["q"] * 2
    gy = ["p"] * 2 + ["q"] * 10
    rng = np.random.default_rng(1)
    pooled = mmd_hamming_test(x, y, length=4, rng=rng)
    grouped = mmd_hamming_test(x, y, x_groups=gx, y_groups=gy, length=4, rng=rng)
    assert pooled.p_value < 0.01
    assert grouped.statistic == 0.0 and grouped.p_value == 1.0 and grouped.n == 24


def test_mmd_degenerate_inputs() -> None:
    rng = np.random.default_rng(0)
    assert mmd_hamming_test([], [], rng=rng) == TestOutcome(0.0, 1.0, 0.0, 0)
    assert mmd_hamming_test(["a"], ["a", "b"], rng=rng).p_value == 1.0
    same = mmd_hamming_test(["same"] * 5, ["same"] * 6, rng=rng)
    assert same.p_value == 1.0 and same.statistic == 0.0 and same.n == 11
    with pytest.raises(ValueError):
        mmd_hamming_test(["a"], ["b"], x_groups=[1], rng=rng)


def test_mmd_null_false_alarm_rate() -> None:
    assert_false_alarm_rate(simulate(toy_mmd_p, seed=10, times=SIMULATIONS))


def test_mmd_detects_lower_temperature() -> None:
    # A subtler fault than truncation: it needs 25 samples per prompt and side for power.
    runs = simulate(lambda r: toy_mmd_p(r, per_prompt=25, temperature=0.5), seed=11, times=50)
    assert_power(runs, 0.9)


def test_mmd_detects_capped_max_tokens() -> None:
    assert_power(simulate(lambda r: toy_mmd_p(r, cap=3), seed=12, times=50), 0.9)


def test_mmd_is_fast_on_two_hundred_samples_of_fifty_tokens() -> None:
    rng = np.random.default_rng(3)
    x = rng.integers(0, 50, size=(200, 50)).tolist()
    y = rng.integers(0, 50, size=(200, 50)).tolist()
    start = time.perf_counter()
    outcome = mmd_hamming_test(x, y, n_permutations=1000, rng=rng)
    assert time.perf_counter() - start < 1.0
    assert outcome.n == 400


def test_mmd_is_reproducible_with_the_same_seed() -> None:
    x, y = ["abc", "abd", "abc"], ["abd", "xyz", "abd"]
    first = mmd_hamming_test(x, y, rng=np.random.default_rng(9))
    assert first == mmd_hamming_test(x, y, rng=np.random.default_rng(9))


# ---------------------------------------------------------------- ranks


def test_rank_of_breaks_ties_uniformly() -> None:
    rng = np.random.default_rng(0)
    assert rank_of(5.0, [1.0, 2.0, 9.0], rng) == 2
    counts = np.bincount([rank_of(1.0, [0.0, 1.0, 1.0, 2.0], rng) for _ in range(3000)])
    assert counts[0] == 0 and counts[4:].sum() == 0
    assert sps.chisquare(counts[1:4]).pvalue > 0.001
    vec = ranks_of([0.5, 5.0], np.array([[0.0, 1.0], [1.0, 2.0]]), rng)
    assert vec.tolist() == [1, 2]


def ranks_p(rng: np.random.Generator, shift: float = 0.0, discrete: bool = False) -> float:
    n, m = 60, 10
    if discrete:
        ref = rng.poisson(1.5, size=(n, m)).astype(float)
        prov = rng.poisson(1.5 + shift, size=n).astype(float)
    else:
        ref = rng.normal(size=(n, m))
        prov = rng.normal(shift, size=n)
    return rank_uniformity_test(ranks_of(prov, ref, rng), m, rng=rng).p_value


def test_rank_uniformity_null_false_alarm_rate_continuous() -> None:
    assert_false_alarm_rate(simulate(ranks_p, seed=20, times=SIMULATIONS))


def test_rank_uniformity_null_false_alarm_rate_with_ties() -> None:
    assert_false_alarm_rate(
        simulate(lambda r: ranks_p(r, discrete=True), seed=21, times=SIMULATIONS)
    )


def test_rank_uniformity_detects_less_likely_provider_samples() -> None:
    assert_power(simulate(lambda r: ranks_p(r, shift=-0.6), seed=22, times=100), 0.9)


def test_rank_effect_is_cliffs_delta_against_the_references() -> None:
    rng = np.random.default_rng(23)
    n, m = 4000, np.array([3, 10] * 2000)
    ref_rows = [rng.normal(size=k) for k in m]
    prov = rng.normal(-0.5, size=n)
    ranks = np.array([rank_of(v, r, rng) for v, r in zip(prov, ref_rows, strict=True)])
    outcome = rank_uniformity_test(ranks, m, rng=rng)
    true_delta = 2 * sps.norm.cdf(-0.5 / math.sqrt(2)) - 1
    assert outcome.effect == pytest.approx(true_delta, abs=0.03)
    assert outcome.p_value < 1e-6 and outcome.n == n


def test_rank_uniformity_validation_and_degenerate() -> None:
    rng = np.random.default_rng(0)
    assert rank_uniformity_test([], 5, rng=rng) == TestOutcome(0.0, 1.0, 0.0, 0)
    assert rank_uniformity_test([0, 0, 0], 0, rng=rng).n == 0
    with pytest.raises(ValueError):
        rank_uniformity_test([0, 6], 5, rng=rng)


# ---------------------------------------------------------------- proportions


def test_proportion_known_answer() -> None:
    outcome = proportion_test(1, 10, 9, 12)
    expected = sps.fisher_exact([[9, 3], [1, 9]]).pvalue
    assert outcome.p_value == pytest.approx(expected)
    assert outcome.effect == pytest.approx(9 / 12 - 1 / 10)
    assert outcome.statistic == pytest.approx(math.log(9.5 * 9.5 / (3.5 * 1.5)))
    assert outcome.n == 22
    assert proportion_test(0, 10, 0, 10).p_value == 1.0
    assert proportion_test(0, 0, 3, 5) == TestOutcome(0.0, 1.0, 0.0, 5)
    with pytest.raises(ValueError):
        proportion_test(4, 3, 0, 1)


def test_one_sided_proportion_only_rejects_a_higher_rate() -> None:
    higher = proportion_test(1, 20, 9, 20, greater=True)
    assert higher.p_value == pytest.approx(
        sps.fisher_exact([[9, 11], [1, 19]], alternative="greater").pvalue
    )
    assert higher.p_value < proportion_test(1, 20, 9, 20).p_value < 0.05
    assert proportion_test(9, 20, 1, 20, greater=True).p_value > 0.99


def test_proportion_null_false_alarm_rate() -> None:
    def run(rng: np.random.Generator) -> float:
        return proportion_test(
            int(rng.binomial(60, 0.3)), 60, int(rng.binomial(60, 0.3)), 60
        ).p_value

    # Fisher's test is conservative: only "not too many" is required.
    assert_false_alarm_rate(simulate(run, seed=30, times=SIMULATIONS), exact=False)


def test_proportion_detects_a_rate_change() -> None:
    def run(rng: np.random.Generator) -> float:
        return proportion_test(
            int(rng.binomial(60, 0.2)), 60, int(rng.binomial(60, 0.55)), 60
        ).p_value

    assert_power(simulate(run, seed=31, times=100), 0.9)


# ---------------------------------------------------------------- shifts


def test_cliffs_delta_known_values() -> None:
    assert cliffs_delta([1, 2, 3], [4, 5]) == 1.0
    assert cliffs_delta([4, 5], [1, 2, 3]) == -1.0
    assert cliffs_delta([1, 2], [2, 1]) == 0.0
    assert cliffs_delta([1, 2], [2]) == 0.5  # one win, one tie
    assert cliffs_delta([], [1.0]) == 0.0


def test_mean_shift_known_answer_and_degenerate() -> None:
    a, b = [1.0, 2.0, 3.0, 4.0, 5.0], [6.0, 7.0, 8.0, 9.0, 10.0]
    outcome = mean_shift_test(a, b)
    assert outcome.effect == 1.0 and outcome.statistic == 25.0
    assert outcome.p_value == pytest.approx(sps.mannwhitneyu(b, a).pvalue)
    assert mean_shift_test([3.0] * 5, [3.0] * 4) == TestOutcome(0.0, 1.0, 0.0, 9)
    assert mean_shift_test([], [1.0, 2.0]).p_value == 1.0
    assert mean_shift_test([1.0, math.nan, 2.0], [3.0, 4.0]).n == 4


def test_mean_shift_null_false_alarm_rate() -> None:
    def run(rng: np.random.Generator) -> float:
        return mean_shift_test(rng.normal(size=40), rng.normal(size=40)).p_value

    assert_false_alarm_rate(simulate(run, seed=40, times=SIMULATIONS))


def test_mean_shift_detects_a_shift() -> None:
    def run(rng: np.random.Generator) -> float:
        return mean_shift_test(rng.normal(size=50), rng.normal(0.8, size=50)).p_value

    assert_power(simulate(run, seed=41, times=100), 0.9)


def test_paired_shift_known_answer_and_degenerate() -> None:
    a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    b = [1.5, 2.5, 3.7, 4.1, 6.0, 5.9]
    outcome = paired_shift_test(a, b)
    d = np.subtract(b, a)
    expected = sps.wilcoxon(d, zero_method="pratt")
    assert outcome.p_value == pytest.approx(expected.pvalue)
    assert outcome.statistic == pytest.approx(expected.statistic)
    assert outcome.effect == pytest.approx(float(np.median(d))) and outcome.n == 6
    assert paired_shift_test([1.0, 2.0], [1.0, 2.0]) == TestOutcome(0.0, 1.0, 0.0, 2)
    assert paired_shift_test([1.0, math.nan, 3.0], [2.0, 1.0, 4.0]).n == 2
    with pytest.raises(ValueError):
        paired_shift_test([1.0], [1.0, 2.0])


def test_paired_shift_null_false_alarm_rate() -> None:
    def run(rng: np.random.Generator) -> float:
        base = rng.normal(size=30)
        return paired_shift_test(base + rng.normal(size=30), base + rng.normal(size=30)).p_value

    assert_false_alarm_rate(simulate(run, seed=50, times=SIMULATIONS))


def test_paired_shift_detects_a_shift() -> None:
    def run(rng: np.random.Generator) -> float:
        base = rng.normal(size=30)
        return paired_shift_test(base, base + rng.normal(0.7, size=30)).p_value

    assert_power(simulate(run, seed=51, times=100), 0.9)


# ---------------------------------------------------------------- multiple testing


def test_bh_known_answer() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    assert bh_adjust(p).tolist() == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert bh_adjust(p) == pytest.approx(sps.false_discovery_control(p))
    assert benjamini_hochberg(p, alpha=0.03) == [True, False, False, True]


def test_bh_missing_p_values_never_reject() -> None:
    adjusted = bh_adjust([0.001, None, math.nan, 0.002])
    assert adjusted[1] == 1.0 and adjusted[2] == 1.0
    assert benjamini_hochberg([0.001, None, math.nan, 0.002]) == [True, False, False, True]
    assert benjamini_hochberg([]) == []


def test_bh_global_null_rejects_rarely() -> None:
    def run(rng: np.random.Generator) -> float:
        return 0.0 if any(benjamini_hochberg(rng.random(20))) else 1.0

    assert_false_alarm_rate(simulate(run, seed=60, times=SIMULATIONS))


def test_holm_known_answer() -> None:
    # sorted: 0.005 x 4, 0.01 x 3, 0.03 x 2, 0.04 x 1, each at least the one before
    assert holm_adjust([0.01, 0.04, 0.03, 0.005]).tolist() == pytest.approx(
        [0.03, 0.06, 0.06, 0.02]
    )
    assert holm_adjust([0.5, None, math.nan]).tolist() == [1.0, 1.0, 1.0]
    assert holm_adjust([]).size == 0


def test_holm_rejects_what_bonferroni_does_and_starts_with_it() -> None:
    rng = np.random.default_rng(62)
    for _ in range(200):
        p = rng.random(6) ** 3
        holm, bonferroni = holm_adjust(p), np.minimum(p * 6, 1.0)
        assert np.all(holm <= bonferroni + 1e-12)
        assert holm.min() == pytest.approx(bonferroni.min())


def test_holm_family_wise_error_under_the_global_null() -> None:
    def run(rng: np.random.Generator) -> float:
        return 0.0 if (holm_adjust(rng.random(6)) <= ALPHA).any() else 1.0

    assert_false_alarm_rate(simulate(run, seed=63, times=SIMULATIONS))


def test_shared_bh_without_shares_is_bh() -> None:
    p = [0.01, 0.04, 0.03, 0.005, None]
    assert shared_bh_adjust(p, [0.0] * 5) == pytest.approx(bh_adjust(p))


def test_shared_bh_sets_a_test_apart_at_its_share() -> None:
    # 0.006 among 19 others, the smallest 0.013: BH over all 20 rejects nothing at 0.05
    # (the smallest adjusted value is 0.095); set apart at 0.8 of the level it is 0.0075
    others = [0.013, 0.014] + [1.0] * 17
    assert bh_adjust([0.006, *others]).min() > 0.05
    adjusted = shared_bh_adjust([0.006, *others], [0.8] + [0.0] * 19)
    assert adjusted[0] == pytest.approx(0.006 / 0.8)
    assert adjusted[1:] == pytest.approx(np.minimum(bh_adjust(others) / 0.2, 1.0))


def test_shared_bh_gives_a_missing_tests_share_back() -> None:
    # the missing one joins the others as never evidence, as in `bh_adjust`
    p = [None, 0.01, 0.02]
    assert shared_bh_adjust(p, [0.8, 0.0, 0.0]) == pytest.approx(bh_adjust(p))


@pytest.mark.parametrize(
    ("shares", "message"),
    [([0.5], "one share per p-value"), ([1.0, 0.0], "in [0, 1)"), ([0.6, 0.5], "less than 1")],
)
def test_shared_bh_rejects_bad_shares(shares: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        shared_bh_adjust([0.1, 0.2], shares)


@pytest.mark.parametrize("share", [0.2, 0.8])
def test_shared_bh_global_null_rejects_rarely(share: float) -> None:
    """Nothing differs: the chance that anything is rejected stays at most the level."""
    shares = [share] + [0.0] * 19

    def run(rng: np.random.Generator) -> float:
        return 0.0 if (shared_bh_adjust(rng.random(20), shares) <= ALPHA).any() else 1.0

    assert_false_alarm_rate(simulate(run, seed=64, times=SIMULATIONS))


def test_fisher_combine() -> None:
    outcome = fisher_combine([0.01, 0.2, None])
    expected = sps.combine_pvalues([0.01, 0.2], method="fisher")
    assert outcome.p_value == pytest.approx(expected.pvalue)
    assert outcome.statistic == pytest.approx(expected.statistic) and outcome.n == 2
    assert fisher_combine([]) == TestOutcome(0.0, 1.0, 0.0, 0)
    assert math.isfinite(fisher_combine([0.0, 0.5]).statistic)

    def run(rng: np.random.Generator) -> float:
        return fisher_combine(rng.random(8)).p_value

    assert_false_alarm_rate(simulate(run, seed=61, times=SIMULATIONS))


# ---------------------------------------------------------------- intervals


def test_clopper_pearson_known_values() -> None:
    low, high = clopper_pearson(0, 10)
    assert low == 0.0 and high == pytest.approx(1 - 0.025 ** (1 / 10))
    low, high = clopper_pearson(5, 10)
    assert (low, high) == pytest.approx((0.187086, 0.812914), abs=1e-6)
    assert clopper_pearson(10, 10)[1] == 1.0
    assert clopper_pearson(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        clopper_pearson(3, 2)


def test_clopper_pearson_covers_at_least_nominally() -> None:
    rng = np.random.default_rng(70)
    ks = rng.binomial(40, 0.3, size=2000)
    covered = [low <= 0.3 <= high for low, high in (clopper_pearson(int(k), 40) for k in ks)]
    assert np.mean(covered) >= 0.94


def test_honest_range() -> None:
    assert honest_range(np.arange(101)) == pytest.approx((2.5, 97.5))
    assert honest_range([3.0, math.nan]) == (3.0, 3.0)
    low, high = honest_range(np.random.default_rng(0).normal(size=20000), coverage=0.9)
    assert low == pytest.approx(-1.645, abs=0.05) and high == pytest.approx(1.645, abs=0.05)
    with pytest.raises(ValueError):
        honest_range([])


# ---------------------------------------------------------------- sequential


def test_sequential_rule_branches() -> None:
    assert per_look_alpha(0.05, 5) == pytest.approx(0.01)
    assert sequential_decision(0.005, 20, 100, looks=5) == "settled_deviant"
    assert sequential_decision(0.02, 20, 100, looks=5) == "continue"  # 0.02 > 0.05 / 5
    assert sequential_decision(0.02, 100, 100, looks=5) == "settled_consistent"
    assert sequential_decision(0.7, 10, 100, looks=5, n_min=20) == "continue"
    assert sequential_decision(0.7, 20, 100, looks=5, n_min=20) == "settled_consistent"
    assert sequential_decision(math.nan, 20, 100, looks=5) == "settled_consistent"

    # a lone promising test keeps it in doubt until the budget is spent
    def lone(n: int, smallest: float) -> str:
        return sequential_decision(0.7, n, 100, looks=5, smallest_p=smallest, futility_p=0.05)

    assert lone(20, 0.01) == "continue"
    assert lone(100, 0.01) == "settled_consistent"
    assert lone(20, 0.2) == "settled_consistent"


def sequential_run(rng: np.random.Generator, shift: float, per_look: float) -> tuple[bool, int]:
    """One budgeted audit: batches of 20 up to 100 samples, a look after each batch."""
    a, b = rng.normal(size=100), rng.normal(shift, size=100)
    for n in range(20, 101, 20):
        p = mean_shift_test(a[:n], b[:n]).p_value
        decision = sequential_decision(p, n, 100, looks=5, alpha=per_look * 5, n_min=40)
        if decision != "continue":
            return decision == "settled_deviant", n
    raise AssertionError("the budget must settle by n_max")


def test_sequential_false_alarm_rate_is_controlled_across_looks() -> None:
    rng = np.random.default_rng(80)
    alarms = [sequential_run(rng, 0.0, per_look=ALPHA / 5)[0] for _ in range(SIMULATIONS)]
    assert_false_alarm_rate([0.0 if hit else 1.0 for hit in alarms], exact=False)


def test_testing_every_look_at_alpha_would_inflate_false_alarms() -> None:
    rng = np.random.default_rng(81)
    alarms = [sequential_run(rng, 0.0, per_look=ALPHA)[0] for _ in range(SIMULATIONS)]
    low, _ = clopper_pearson(sum(alarms), SIMULATIONS, confidence=0.99)
    assert low > ALPHA


def test_sequential_detects_a_shift_and_saves_samples() -> None:
    rng = np.random.default_rng(82)
    runs = [sequential_run(rng, 0.7, per_look=ALPHA / 5) for _ in range(100)]
    assert np.mean([hit for hit, _ in runs]) >= 0.9
    assert np.mean([n for _, n in runs]) < 70


def test_excess_rate_test_known_values() -> None:
    from auditor.stats import excess_rate_test

    none = excess_rate_test(0, 23, 0.01)
    assert none.p_value == 1.0 and none.effect == pytest.approx(-0.01)
    one = excess_rate_test(1, 23, 0.01)
    assert one.p_value == pytest.approx(1 - 0.99**23)  # one quirk in 23 is not evidence
    two = excess_rate_test(2, 2, 0.01)
    assert two.p_value == pytest.approx(1e-4)
    assert excess_rate_test(4, 23, 0.01).p_value < 0.001
    with pytest.raises(ValueError):
        excess_rate_test(3, 2, 0.01)
