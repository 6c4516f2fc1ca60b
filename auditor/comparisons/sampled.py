"""Sampled (temperature > 0) answers: their texts and their likelihood ranks."""

from __future__ import annotations

from auditor.comparisons.base import MIN_SAMPLES, Comparison, result_of, seeded_rng
from auditor.observations import Observation
from auditor.stats import mmd_hamming_test


def sampled_outputs(
    reference: list[Observation], provider: list[Observation], seed: str
) -> list[Comparison]:
    """MMD with a Hamming kernel (Gao et al. 2024) on the completions of sampled probes
    (temperature > 0), compared prompt by prompt."""

    def sampled(obs: list[Observation]) -> list[Observation]:
        return [o for o in obs if o.ok and o.text is not None and (o.temperature or 0) > 0]

    a, b = sampled(reference), sampled(provider)
    if len(a) < MIN_SAMPLES or len(b) < MIN_SAMPLES:
        return []
    rng = seeded_rng(seed)
    outcome = mmd_hamming_test(
        [o.text or "" for o in a], [o.text or "" for o in b], rng=rng,
        x_groups=[o.probe_hash for o in a], y_groups=[o.probe_hash for o in b],
        n_permutations=999,
    )  # fmt: skip
    return [Comparison(result_of("mmd_hamming:sampled", outcome), "text", "sampled")]
