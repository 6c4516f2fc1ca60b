"""Which reference requests share a cached answer."""

from __future__ import annotations

from auditor.providers.cache import cache_key
from auditor.records import CompletionRequest, Message, RequestParams


def key(index: int = 0, weights: str = "sha256:a", **params: object) -> str:
    request = CompletionRequest(
        probe_id="p",
        probe_hash="h",
        sample_index=index,
        messages=[Message(role="user", content="hi")],
        params=RequestParams(**params),
    )
    return cache_key(weights, "llama_cpp", request)[0]


def test_greedy_requests_share_one_answer_across_sample_numbers() -> None:
    assert key(0, temperature=0) == key(3, temperature=0)


def test_seeded_sampling_is_keyed_by_seed_not_sample_number() -> None:
    assert key(0, temperature=1, seed=5) == key(1, temperature=1, seed=5)
    assert key(0, temperature=1, seed=5) != key(0, temperature=1, seed=6)


def test_unseeded_sampling_keeps_one_answer_per_sample_number() -> None:
    assert key(0, temperature=1) != key(1, temperature=1)
    assert key(0) != key(1)  # no temperature: the engine's default samples


def test_other_weights_or_params_never_share() -> None:
    assert key(temperature=0) != key(temperature=0, weights="sha256:b")
    assert key(temperature=0) != key(temperature=0, max_tokens=5)
