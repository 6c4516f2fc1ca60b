"""Which reference requests share a cached answer."""

from __future__ import annotations

import socket

from auditor.providers.base import ProviderAdapter
from auditor.providers.cache import CachedReference, cache_key
from auditor.records import CompletionRequest, CompletionResponse, Message, RequestParams
from auditor.storage.db import make_engine
from auditor.storage.repository import Store


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


class Engine(ProviderAdapter):
    """A reference engine that answers every request."""

    name = "reference"

    def __init__(self) -> None:
        self.calls = 0

    async def complete(self, request: CompletionRequest) -> CompletionResponse:
        self.calls += 1
        return CompletionResponse(ok=True, status_code=200, text="Paris")


async def test_a_cache_the_database_cannot_read_is_a_miss_not_an_error() -> None:
    """The database is away (nothing listens on its port) when the reference's cache is
    read: the engine answers, as on a miss. Before, the read's error made the reference's
    answer an `internal_error` sample."""
    with socket.socket() as probe:  # a free port: connections to it are refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    away = Store(make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{port}/x"))
    engine = Engine()
    cached = CachedReference(engine, away, "sha256:a", "llama_cpp")
    response = await cached.complete(
        CompletionRequest(
            probe_id="p",
            probe_hash="h",
            sample_index=0,
            messages=[Message(role="user", content="hi")],
            params=RequestParams(temperature=0),
        )
    )
    assert response.ok and response.text == "Paris" and engine.calls == 1
