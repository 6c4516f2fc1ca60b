"""The typed records the dashboard pages and the JSON API show: read models over the results
database, built by `auditor.web.queries` and served as they are (the API) or rendered (pages).

Nothing here carries a secret: providers are shown by name, base URL and model id, never by
their configured headers or the name of their key variable.
"""

from __future__ import annotations

from datetime import datetime
from typing import Generic, TypeVar

from pydantic import BaseModel, Field

from auditor.records import (
    Capability,
    ContextWindow,
    Diagnosis,
    Finding,
    IncidentInfo,
    UpstreamShare,
)
from auditor.report.render import RoundInfo

T = TypeVar("T")


class Cell(BaseModel):
    """One provider of one model in the overview grid: its latest finding."""

    model: str
    provider: str
    provider_id: int
    trusted: bool = False
    verdict: str | None = None  # None: never assessed
    severity: str | None = None
    diagnoses: list[Diagnosis] = Field(default_factory=list)
    round_id: str | None = None
    finding_id: int | None = None
    assessed_at: datetime | None = None
    since: datetime | None = None  # when the current run of this verdict began
    open_incident: IncidentInfo | None = None


class Overview(BaseModel):
    models: list[str]
    providers: list[str]  # provider names, the grid's columns
    cells: list[Cell]
    open_incidents: list[IncidentInfo]
    last_round: RoundInfo | None


class RoundSummary(BaseModel):
    """A round in a list: what ran and what it found."""

    id: str
    suite: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    requests: int
    errors: int
    verdicts: dict[str, int]  # verdict -> providers with it


class TestPoint(BaseModel):
    """One round's value of one statistical test, with the honest band around it."""

    round_id: str
    at: datetime
    statistic: float | None
    p_value: float | None
    effect: float | None
    honest_low: float | None
    honest_high: float | None
    n: int


class ProviderPoint(BaseModel):
    """One round of one provider: verdict, traffic, errors and speed."""

    round_id: str
    at: datetime
    finding_id: int | None
    verdict: str | None
    severity: str | None
    requests: int
    errors: int
    error_rate: float | None
    tokens: int
    cost: float | None
    latency_ms_mean: float | None
    effective_window: int | None = None  # prompt tokens, where the round ran a context ladder


class ProviderInfo(BaseModel):
    id: int
    model: str
    name: str
    kind: str  # provider | reference
    base_url: str | None
    model_id: str | None
    trusted: bool


class LadderReading(BaseModel):
    """A provider's latest effective context window: the finding and round it comes from."""

    round_id: str
    at: datetime
    finding_id: int
    window: ContextWindow  # as `Finding.context_window` in the report JSON contract


class CapabilityReading(BaseModel):
    """A provider's latest capability table: the request parameters a round probed, each
    honoured, rejected, ignored or unknown, and the finding and round it comes from."""

    round_id: str
    at: datetime
    finding_id: int
    capabilities: list[Capability]  # as `Finding.capabilities` in the report JSON contract


class UpstreamReading(BaseModel):
    """Behind a router: what each upstream host served in the provider's latest round that
    named one, and the finding and round it comes from."""

    round_id: str
    at: datetime
    finding_id: int
    upstreams: list[UpstreamShare]  # as `Finding.upstreams` in the report JSON contract


class ProviderHistory(BaseModel):
    provider: ProviderInfo
    points: list[ProviderPoint]  # oldest first
    tests: dict[str, list[TestPoint]]  # test name -> its points, oldest first
    incidents: list[IncidentInfo]  # newest first
    # The latest of the rounds shown that ran a context ladder (None: none did).
    context_window: LadderReading | None = None
    # The latest of the rounds shown that probed request parameters (None: none did).
    capabilities: CapabilityReading | None = None
    # The latest of the rounds shown where a router named upstreams (None: none did).
    upstreams: UpstreamReading | None = None


class EvidencePair(BaseModel):
    """A probe whose answers differ: the reference's and the provider's, side by side."""

    probe: str
    reference: str
    provider: str
    note: str


class FindingDetail(BaseModel):
    id: int
    round: RoundInfo
    provider_id: int | None
    finding: Finding  # as in the report JSON contract
    detector: str
    created_at: datetime


class RoundFinding(BaseModel):
    id: int
    model: str
    provider: str
    provider_id: int | None
    verdict: str
    severity: str
    diagnoses: list[Diagnosis]
    requests: int
    errors: int
    tokens: int


class ProviderTotals(BaseModel):
    model: str
    provider: str
    kind: str
    requests: int
    errors: int
    tokens: int
    latency_ms_mean: float | None
    errors_by_class: dict[str, int]
    cost: float | None = None


class RoundDetail(BaseModel):
    round: RoundInfo
    findings: list[RoundFinding]
    totals: list[ProviderTotals]


class SampleView(BaseModel):
    """One stored exchange, without its raw payloads (see `SampleDetail`)."""

    id: int
    round_id: str
    model: str
    provider: str
    probe_id: str
    sample_index: int
    ok: bool
    status_code: int | None
    error_class: str | None
    output_text: str | None
    finish_reason: str | None
    total_tokens: int | None
    latency_ms: float | None
    created_at: datetime
    # The reasoning returned beside the answer (never what leaked into `output_text`), the
    # field it came in (`reasoning` or `reasoning_content`) and the completion tokens spent
    # reasoning (`usage.completion_tokens_details.reasoning_tokens`); None: none.
    reasoning_text: str | None = None
    reasoning_source: str | None = None
    reasoning_tokens: int | None = None
    upstream: str | None = None  # the upstream host a router says served it


class SampleDetail(SampleView):
    error_message: str | None
    request_json: dict[str, object]
    response_json: dict[str, object] | None
    probe_hash: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost: float | None = None
    ttft_ms: float | None = None
    attempts: int = 1
    cached: bool = False  # a reference answer reused from the cache, not recomputed
    served_model: str | None = None
    tool_calls_json: list[dict[str, object]] | None = None
    started_at: datetime | None = None


class EvidenceSamples(BaseModel):
    """The stored samples behind one evidence pair of a finding (None: not found in the
    finding's round, as for a reference answer from an earlier round)."""

    reference: SampleView | None = None
    provider: SampleView | None = None


class Page(BaseModel, Generic[T]):
    """A page of a long list, keyset-paginated: pass `next_cursor` as `cursor` for the next."""

    items: list[T]
    next_cursor: str | None
