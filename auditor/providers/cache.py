"""Reference answers cached in the database, so repeated rounds do not recompute them.

The key is (weights digest, engine, messages, params, seed). A sampled request without a seed
has no reproducible answer, so its key holds the sample number instead: the k-th reference
sample of a prompt is drawn once and reused, which keeps rounds comparable and cheap.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from auditor.providers.base import ProviderAdapter
from auditor.records import CompletionRequest, CompletionResponse, content_hash
from auditor.storage.repository import Store

log = structlog.get_logger(__name__)


def cache_key(
    weights_digest: str, engine: str, request: CompletionRequest
) -> tuple[str, dict[str, Any]]:
    params = request.params.wire()
    identity: dict[str, Any] = {
        "weights": weights_digest,
        "engine": engine,
        "messages": [m.model_dump(exclude_none=True) for m in request.messages],
        "params": params,
    }
    if params.get("seed") is None and params.get("temperature", 1.0) != 0:
        identity["sample_index"] = request.sample_index
    if request.reasoning_effort is not None:  # only where set: older keys stay valid
        identity["reasoning_effort"] = request.reasoning_effort
    return content_hash(identity), identity


class CachedReference(ProviderAdapter):
    def __init__(
        self, inner: ProviderAdapter, store: Store, weights_digest: str, engine: str
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.store = store
        self.weights_digest = weights_digest
        self.engine = engine
        self.hits = 0
        self.misses = 0

    async def complete(self, request: CompletionRequest) -> CompletionResponse:
        key, identity = cache_key(self.weights_digest, self.engine, request)
        try:
            found = await asyncio.to_thread(self.store.cached_reference, key)
        except Exception as exc:  # the database away: ask the engine, as for a miss
            log.warning("reference_cache.read_failed", error=f"{type(exc).__name__}: {exc}"[:300])
            found = None
        if found is not None:
            self.hits += 1
            return CompletionResponse.model_validate({**found, "cached": True})
        self.misses += 1
        response = await self.inner.complete(request)
        if response.ok:
            try:
                await asyncio.to_thread(
                    self.store.cache_reference,
                    key,
                    self.weights_digest,
                    self.engine,
                    identity,
                    response.model_dump(mode="json"),
                )
            except Exception as exc:  # a cache that cannot be written only costs recomputation
                log.warning("reference_cache.write_failed", error=repr(exc))
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()
