"""Build the reference endpoint of a model: the official weights on an engine the user trusts.

The runner treats the reference as one more endpoint (same `complete` interface); what only a
reference can offer (scoring a given continuation) lives on the engine classes themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

from auditor.config import EndpointReference, LlamaCppReference, ProviderConfig
from auditor.errors import AuditorError
from auditor.providers.base import ProviderAdapter, adapters


class ReferenceUnavailable(AuditorError):
    """The configured reference cannot run here (engine missing, weights not found...)."""


@dataclass
class ReferenceEndpoint:
    adapter: ProviderAdapter
    digest: str
    model_id: str
    base_url: str | None
    limits: ProviderConfig


def build_reference(config: LlamaCppReference | EndpointReference) -> ReferenceEndpoint:
    if isinstance(config, EndpointReference):
        provider = ProviderConfig(
            name="reference",
            base_url=config.base_url,
            model=config.model,
            api_key_env=config.api_key_env,
            timeout_s=config.timeout_s,
            max_concurrency=config.max_concurrency,
            requests_per_second=1000,
            burst=config.max_concurrency,
        )
        return ReferenceEndpoint(
            adapter=adapters.get("openai")(provider),  # type: ignore[call-arg]
            digest=f"endpoint:{config.model}",
            model_id=config.model,
            base_url=config.base_url,
            limits=provider,
        )
    from auditor.providers.llama_cpp import LlamaCppEngine

    engine = LlamaCppEngine(config)
    limits = ProviderConfig(
        name="reference",
        base_url="http://127.0.0.1/",  # unused: the engine runs in process
        model=engine.model_id,
        requests_per_second=1000,
        burst=1,
        max_concurrency=1,  # one model, one decode at a time
        timeout_s=600,
    )
    return ReferenceEndpoint(engine, engine.digest, engine.model_id, None, limits)
