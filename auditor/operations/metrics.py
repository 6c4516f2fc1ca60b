"""Prometheus metrics of the auditor process, served at `/metrics` by the daemon.

Counters and histograms are updated where things happen (the runner, the limits, the webhook
delivery); figures that live in the database (open incidents, the last completed round) are
read when Prometheus scrapes, by `auditor.web`. One registry per process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

if TYPE_CHECKING:
    from auditor.records import CompletionResponse

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter(
    "auditor_requests",
    "Requests sent to providers and the reference, by outcome: ok, the error class, or cached "
    "(a reference answer reused from the database, not recomputed).",
    ["model", "provider", "outcome"],
    registry=REGISTRY,
)
REQUEST_LATENCY = Histogram(
    "auditor_request_latency_seconds",
    "Time from sending a request to its complete answer.",
    ["model", "provider"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
    registry=REGISTRY,
)
LIMITER_WAIT = Histogram(
    "auditor_rate_limiter_wait_seconds",
    "Time a request waited for its provider's rate, token and concurrency limits.",
    ["model", "provider"],
    buckets=(0.001, 0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60),
    registry=REGISTRY,
)
TOKENS = Counter(
    "auditor_tokens",
    "Tokens spent (prompt plus completion, as billed).",
    ["model", "provider"],
    registry=REGISTRY,
)
ROUNDS = Counter(
    "auditor_rounds",
    "Rounds run by this process, by suite and status.",
    ["suite", "status"],
    registry=REGISTRY,
)
WEBHOOK_DELIVERIES = Counter(
    "auditor_webhook_deliveries",
    "Webhook delivery attempts, by sink and outcome (delivered, retry, failed, disabled).",
    ["sink", "outcome"],
    registry=REGISTRY,
)
LEADER = Gauge(
    "auditor_leader",
    "1 while this daemon holds the leader lock and runs rounds, else 0.",
    registry=REGISTRY,
)


def observe_answer(
    model: str, provider: str, response: CompletionResponse, elapsed_s: float
) -> None:
    """Count one answer as it arrives. A cached reference answer cost no time and no tokens:
    it is counted under outcome `cached` only."""
    if response.cached:
        REQUESTS.labels(model, provider, "cached").inc()
        return
    outcome = "ok" if response.ok else str(response.error_class or "error")
    REQUESTS.labels(model, provider, outcome).inc()
    REQUEST_LATENCY.labels(model, provider).observe(elapsed_s)
    if tokens := response.usage.spent:
        TOKENS.labels(model, provider).inc(tokens)
