"""Build the reference endpoint of a model: the official weights on an engine the user trusts.

The runner treats the reference as one more endpoint (same `complete` interface); what only a
reference can offer, scoring a given continuation, is its `scorer` (None, with the reason in
`scorer_note`, where the engine cannot: the signals that need it are then `not_available`).
"""

from __future__ import annotations

from dataclasses import dataclass

from auditor.config import EndpointReference, LlamaCppReference, ProviderConfig, ReasoningRequest
from auditor.providers.base import ProviderAdapter, adapters
from auditor.providers.continuation import (
    ChatTemplate,
    ContinuationScorer,
    EndpointContinuationScorer,
    ScoringUnavailable,
)
from auditor.providers.llama_cpp import LlamaCppEngine, ReferenceUnavailable

__all__ = ["ReferenceEndpoint", "ReferenceUnavailable", "build_reference"]


@dataclass
class ReferenceEndpoint:
    adapter: ProviderAdapter
    digest: str
    model_id: str
    base_url: str | None
    limits: ProviderConfig
    scorer: ContinuationScorer | None = None
    scorer_note: str | None = None


def build_reference(
    config: LlamaCppReference | EndpointReference, reasoning: ReasoningRequest | None = None
) -> ReferenceEndpoint:
    """The reference engine; an endpoint is asked for effort levels as `reasoning` says (the
    model profile's way)."""
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
            reasoning=reasoning,
        )
        scorer, note = _endpoint_scorer(config)
        return ReferenceEndpoint(
            adapter=adapters.get("openai")(provider),  # type: ignore[call-arg]
            digest=f"endpoint:{config.model}",
            model_id=config.model,
            base_url=config.base_url,
            limits=provider,
            scorer=scorer,
            scorer_note=note,
        )
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
    return ReferenceEndpoint(engine, engine.digest, engine.model_id, None, limits, scorer=engine)


def _endpoint_scorer(
    config: EndpointReference,
) -> tuple[ContinuationScorer | None, str | None]:
    """Scoring through the endpoint needs the model's chat template, from `tokenizer_path`."""
    if config.tokenizer_path is None:
        return None, (
            "the endpoint reference has no tokenizer_path (a GGUF or tokenizer_config.json "
            "holding the chat template): continuation scores are not available"
        )
    try:
        template = ChatTemplate.from_file(config.tokenizer_path)
    except ScoringUnavailable as exc:
        return None, str(exc)
    return EndpointContinuationScorer(config, template), None
