"""The results database: plain columns for what researchers filter on, JSON for raw payloads.

Every table is documented in the README. Changes go through an Alembic migration
(auditor/storage/migrations) and are additive: scripts and dashboards query these names.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, Table, UniqueConstraint
from sqlmodel import Field, SQLModel


def _json(nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(JSON, nullable=nullable))


def _ts(nullable: bool = False, index: bool = False) -> Any:
    return Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=nullable, index=index)
    )


def core_table(model: type[SQLModel]) -> Table:
    """A table model's Core `Table`, for plain Core statements (inserts, column aliases)."""
    table: Table = model.__table__  # type: ignore[attr-defined]  # SQLModel sets it, undeclared
    return table


class RoundRow(SQLModel, table=True):
    """One audit round: one suite sent to every provider (and the reference) of the models."""

    __tablename__ = "rounds"

    id: str = Field(primary_key=True, max_length=32)
    suite: str = Field(index=True)
    suite_hash: str
    auditor_version: str
    reference_digest: str | None = None
    started_at: datetime = _ts(index=True)
    finished_at: datetime | None = _ts(nullable=True)
    status: str = Field(default="running", index=True)  # running | interrupted | complete
    stop_reason: str | None = None  # None when every planned request was sent; else why not
    planned_requests: int = 0
    models: list[str] | None = _json()
    budget: dict[str, Any] | None = _json()
    # What the findings depend on beyond the samples: {"noise_tolerance": {model: nats}}.
    judging: dict[str, Any] | None = _json()
    hostname: str | None = None
    pid: int | None = None


class ProviderRow(SQLModel, table=True):
    """A provider of a model as configured (secrets excluded), or the reference engine."""

    __tablename__ = "providers"
    __table_args__ = (UniqueConstraint("model", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    model: str = Field(index=True)
    name: str
    kind: str = "provider"  # provider | reference
    base_url: str | None = None
    model_id: str | None = None
    trusted: bool = False
    config: dict[str, Any] | None = _json()
    updated_at: datetime = _ts()


class ProbeCaseRow(SQLModel, table=True):
    """A probe case, content-addressed: a changed prompt is a new row, old samples keep theirs."""

    __tablename__ = "probe_cases"

    hash: str = Field(primary_key=True, max_length=64)
    probe_id: str = Field(index=True)
    suite: str = Field(index=True)
    probe_group: str | None = None
    signals: list[str] | None = _json()
    case: dict[str, Any] = _json(nullable=False)
    first_seen: datetime = _ts()


_SUMMARY = ("ok", "latency_ms", "total_tokens")


class SampleRow(SQLModel, table=True):
    """One request and its response, committed the moment it arrives."""

    __tablename__ = "samples"
    __table_args__ = (
        UniqueConstraint("round_id", "provider_id", "probe_hash", "sample_index"),
        # covering: error rate, latency and tokens per provider over a time window, read from
        # an index alone (SQLite's planner takes the first, PostgreSQL's the second)
        Index("ix_samples_provider_summary", "provider_id", "created_at", *_SUMMARY),
        Index("ix_samples_created_summary", "created_at", "provider_id", *_SUMMARY),
        Index("ix_samples_probe_created", "probe_id", "created_at"),
        # a filtered page of the newest samples, read in id order (no sort of every match)
        Index("ix_samples_round_order", "round_id", "id"),
        Index("ix_samples_provider_order", "provider_id", "id"),
        Index("ix_samples_probe_order", "probe_id", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    round_id: str = Field(foreign_key="rounds.id")
    provider_id: int = Field(foreign_key="providers.id")
    probe_hash: str = Field(foreign_key="probe_cases.hash")
    probe_id: str
    sample_index: int
    ok: bool
    status_code: int | None = None
    error_class: str | None = None
    error_message: str | None = None
    output_text: str | None = None
    # the reasoning returned beside the answer, the field it came in (reasoning |
    # reasoning_content) and usage.completion_tokens_details.reasoning_tokens
    reasoning_text: str | None = None
    reasoning_source: str | None = None
    reasoning_tokens: int | None = None
    upstream: str | None = None  # the upstream host a router says served it
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    cost: float | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    attempts: int = 1
    cached: bool = False  # a reference answer reused from reference_cache, not recomputed
    served_model: str | None = None
    request_json: dict[str, Any] = _json(nullable=False)
    response_json: dict[str, Any] | None = _json()
    logprobs_json: list[dict[str, Any]] | None = _json()
    tool_calls_json: list[dict[str, Any]] | None = _json()
    response_headers: dict[str, str] | None = _json()
    started_at: datetime = _ts()
    created_at: datetime = _ts()


class ScoreRow(SQLModel, table=True):
    """One number a named scorer (with its parameters) derived from one sample."""

    __tablename__ = "scores"
    __table_args__ = (Index("ix_scores_sample", "sample_id"), Index("ix_scores_metric", "metric"))

    id: int | None = Field(default=None, primary_key=True)
    sample_id: int = Field(foreign_key="samples.id")
    scorer: str
    scorer_params: dict[str, Any] | None = _json()
    metric: str
    value: float | None = None
    passed: bool | None = None
    detail: dict[str, Any] | None = _json()


class FindingRow(SQLModel, table=True):
    """One provider's assessment in one round, as in the report JSON contract."""

    __tablename__ = "findings"
    __table_args__ = (
        UniqueConstraint("round_id", "model", "provider"),
        # a provider's findings in round order, and its latest of each verdict, read from an
        # index: its latest finding and since when its verdict holds, in a few seeks
        Index("ix_findings_pair_order", "model", "provider", "round_started_at", "id"),
        Index("ix_findings_pair_verdict", "model", "provider", "verdict", "round_started_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    round_id: str = Field(foreign_key="rounds.id", index=True)
    model: str
    provider: str = Field(index=True)
    baseline: str
    verdict: str = Field(index=True)
    severity: str
    diagnoses: list[dict[str, Any]] | None = _json()
    tests: list[dict[str, Any]] | None = _json()
    evidence: list[dict[str, Any]] | None = _json()
    requests: int = 0
    errors: int = 0
    tokens: int = 0
    cost: float | None = None
    errors_by_class: dict[str, int] | None = _json()
    context_window: dict[str, Any] | None = _json()  # `Finding.context_window`, from a ladder
    upstreams: list[dict[str, Any]] | None = _json()  # `Finding.upstreams`, behind a router
    capabilities: list[dict[str, Any]] | None = _json()  # `Finding.capabilities`
    detector: str
    detector_params: dict[str, Any] | None = _json()
    created_at: datetime = _ts()
    # A copy of the round's `started_at`, the order of a provider's findings (a recomputed old
    # round stays old), so that an index on findings alone gives a provider's latest.
    round_started_at: datetime = _ts()


class ReferenceCacheRow(SQLModel, table=True):
    """A reference answer, reused by later rounds that send the same request to the same
    weights on the same engine, so the reference is not recomputed every round."""

    __tablename__ = "reference_cache"

    key: str = Field(primary_key=True, max_length=64)
    weights_digest: str = Field(index=True)
    engine: str
    request: dict[str, Any] = _json(nullable=False)
    response: dict[str, Any] = _json(nullable=False)
    created_at: datetime = _ts()


class CalibrationRow(SQLModel, table=True):
    """The noise band of honest providers and the detector's false-alarm rate on them,
    from simulated rounds (`auditor calibrate`); later findings show the bands."""

    __tablename__ = "calibrations"

    id: int | None = Field(default=None, primary_key=True)
    model: str = Field(index=True)
    round_ids: list[str] | None = _json()
    honest_endpoints: list[str] | None = _json()
    detector: str
    alpha: float
    rounds: int
    flagged: int
    rate: float
    upper_bound: float
    honest_ranges: dict[str, Any] | None = _json()
    flagged_by_test: dict[str, Any] | None = _json()
    created_at: datetime = _ts()


class IncidentRow(SQLModel, table=True):
    """A provider (or the auditor itself) in trouble: opened when its findings turn deviant or
    unavailable, resolved when they return to consistent. Alerts go out per incident."""

    __tablename__ = "incidents"

    id: int | None = Field(default=None, primary_key=True)
    model: str = Field(index=True)
    provider: str = Field(index=True)  # `auditor` for the auditor's own incidents
    kind: str = "provider"  # provider | stale_rounds
    state: str = Field(default="open", index=True)  # open | resolved
    verdict: str  # what opened it: deviant | unavailable | stale
    severity: str
    summary: str
    diagnoses: list[dict[str, Any]] | None = _json()
    opened_round_id: str | None = None
    last_round_id: str | None = None
    resolved_round_id: str | None = None
    opened_at: datetime = _ts()
    updated_at: datetime = _ts()
    resolved_at: datetime | None = _ts(nullable=True)
    acknowledged_at: datetime | None = _ts(nullable=True)
    acknowledged_by: str | None = None
    muted_until: datetime | None = _ts(nullable=True)  # no alerts until then


class OutboxRow(SQLModel, table=True):
    """One webhook message for one sink, kept until delivered or given up. The id is the
    `webhook-id` header: the same on every retry, so receivers de-duplicate."""

    __tablename__ = "webhook_outbox"
    __table_args__ = (Index("ix_webhook_outbox_due", "state", "next_attempt_at"),)

    id: str = Field(primary_key=True, max_length=64)  # msg_...
    sink: str = Field(index=True)
    event_type: str  # incident.opened | incident.resolved | test
    incident_id: int | None = Field(default=None, index=True)
    body: dict[str, Any] = _json(nullable=False)
    state: str = "pending"  # pending | delivered | failed | disabled
    attempts: int = 0
    last_status: int | None = None
    last_error: str | None = None
    created_at: datetime = _ts()
    next_attempt_at: datetime = _ts()
    delivered_at: datetime | None = _ts(nullable=True)


class SinkStateRow(SQLModel, table=True):
    """A sink the receiver asked to stop (HTTP 410 Gone): disabled until re-enabled."""

    __tablename__ = "webhook_sinks"

    name: str = Field(primary_key=True, max_length=128)
    disabled_at: datetime | None = _ts(nullable=True)
    disabled_reason: str | None = None
