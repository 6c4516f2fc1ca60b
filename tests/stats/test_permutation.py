"""auditor.stats.permutation: exact p-values checked by brute force, a null that must not
reject more than alpha allows, an effect that must reject."""

from __future__ import annotations

from itertools import combinations, product

import numpy as np
import pytest

from auditor.stats import clopper_pearson, label_permutation_floor, label_permutation_test

ALPHA = 0.05


def brute_force_p(groups: list[tuple[list[float], list[float]]]) -> float:
    """P(T* >= T) by listing every relabelling of every group."""
    observed = sum(sum(lab) for lab, _ in groups)
    options = [
        [sum(c) for c in combinations(lab + oth, len(lab))] for lab, oth in groups if lab and oth
    ]
    total = hits = 0
    for pick in product(*options):
        total += 1
        hits += sum(pick) >= observed - 1e-9
    return hits / total


def test_known_answers() -> None:
    # three groups where only the original moved: each relabelling keeps it with prob 1/3
    out = label_permutation_test([([1.0], [0.0, 0.0])] * 3)
    assert out.p_value == pytest.approx(1 / 27)
    assert out.statistic == 3.0 and out.n == 9
    assert out.effect == pytest.approx(1.0)  # originals' mean 1, twins' mean 0
    # the same groups pointing the other way: nothing one-sided to see
    assert label_permutation_test([([0.0], [1.0, 1.0])] * 3).p_value == 1.0
    # one pair each way cancel: P(T* >= 0) over the four relabellings is 3/4
    assert label_permutation_test([([1.0], [0.0]), ([0.0], [1.0])]).p_value == pytest.approx(0.75)


def test_uninformative_groups_change_nothing() -> None:
    base = [([1.0], [0.0, 0.0]), ([1.0], [0.0])]
    padded = [*base, ([0.0], [0.0, 0.0]), ([1.0], []), ([], [0.0]), ([0.5], [0.5])]
    assert label_permutation_test(padded).p_value == pytest.approx(
        label_permutation_test(base).p_value
    )
    assert label_permutation_test([]).p_value == 1.0
    assert label_permutation_test([([0.0], [0.0])]).p_value == 1.0


def test_matches_brute_force_on_random_groups() -> None:
    rng = np.random.default_rng(1)
    for _ in range(60):
        groups = []
        for _ in range(int(rng.integers(1, 5))):
            size = int(rng.integers(2, 5))
            labelled = int(rng.integers(1, size))
            values = rng.choice([-1.0, -0.5, 0.0, 0.5, 1.0], size=size).tolist()
            groups.append((values[:labelled], values[labelled:]))
        assert label_permutation_test(groups).p_value == pytest.approx(brute_force_p(groups))


def test_floor() -> None:
    assert label_permutation_floor([(1, 1)] * 3) == pytest.approx(1 / 8)
    assert label_permutation_floor([(1, 1), (1, 1), (1, 2)]) == pytest.approx(1 / 12)
    assert label_permutation_floor([(1, 2)] * 6) == pytest.approx(3.0**-6)
    assert label_permutation_floor([(2, 2), (1, 0)]) == pytest.approx(1 / 6)
    # the floor is reached when every original stands out
    assert label_permutation_test([([1.0], [0.0, 0.0])] * 6).p_value == pytest.approx(3.0**-6)


def simulate(rng: np.random.Generator, groups: int, p_original: float, p_twin: float) -> float:
    """Provider-minus-reference differences in {-1, 0, 1}: a flip where the endpoints part."""
    data = []
    for _ in range(groups):
        diff = lambda p: float(rng.random() < p) - float(rng.random() < 0.1)  # noqa: E731
        data.append(([diff(p_original)], [diff(p_twin), diff(p_twin)]))
    return label_permutation_test(data).p_value


def test_null_does_not_reject_more_than_alpha() -> None:
    # an honest provider: departures from the reference as likely on originals as on twins
    rng = np.random.default_rng(7)
    p_values = [simulate(rng, 8, 0.1, 0.1) for _ in range(400)]
    k = sum(p <= ALPHA for p in p_values)
    low, _ = clopper_pearson(k, len(p_values), confidence=0.999)
    assert low <= ALPHA, f"{k}/400 false alarms at alpha {ALPHA}"


def test_labels_exchangeable_gives_uniform_enough_p_values() -> None:
    # under the null the exact test is valid at every level: P(p <= a) <= a (up to noise)
    rng = np.random.default_rng(11)
    p_values = np.array([simulate(rng, 10, 0.3, 0.3) for _ in range(400)])
    for level in (0.1, 0.25, 0.5):
        low, _ = clopper_pearson(int(np.sum(p_values <= level)), p_values.size, confidence=0.999)
        assert low <= level


def test_an_effect_rejects() -> None:
    # a tuned provider: it solves the originals the reference fails, not the twins
    rng = np.random.default_rng(3)
    p_values = [simulate(rng, 16, 0.7, 0.1) for _ in range(100)]
    assert sum(p <= ALPHA for p in p_values) >= 85  # power about 0.96 with 16 groups
    # and a clean one: every original moved, no twin did
    assert label_permutation_test([([1.0], [0.0, 0.0])] * 6).p_value < 0.01
