"""Calibration on simulated honest rounds: synthetic endpoints with a known answer."""

from __future__ import annotations

import pytest
from helpers.synthetic import fleet

from auditor.judging.calibration import calibrate


def test_honest_providers_are_rarely_flagged_and_bands_are_reported() -> None:
    reference = fleet("reference", 0)
    honest = {name: fleet(name, seed) for seed, name in enumerate(("a", "b", "c"), start=1)}
    result = calibrate(reference, honest, rounds=60, seed=1)
    assert result.rounds == 60 and result.honest_endpoints == ["a", "b", "c"]
    assert result.rate <= 0.1
    assert result.rate <= result.upper_bound < 0.2
    low, high = result.honest_ranges["shift:words"]
    assert low < high  # words vary between honest answers: the band has a width
    assert result.honest_ranges["prompt_tokens@all"] == (0.0, 0.0)  # exact for honest ones


def test_a_dishonest_provider_among_the_honest_ones_shows_as_false_alarms() -> None:
    reference = fleet("reference", 0)
    honest = {"a": fleet("a", 1), "b": fleet("b", 2, prompt_tokens=lambda o: o.prompt_tokens + 35)}
    result = calibrate(reference, honest, rounds=40, seed=1)
    assert result.rate > 0.5  # half of each simulated provider's answers carry the change
    assert result.flagged_by_test


def test_one_honest_provider_is_not_enough() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        calibrate(fleet("reference", 0), {"a": fleet("a", 1)}, rounds=20)
