"""A round's stored samples and scores, read back as typed observations for the comparisons.

Everything a comparison needs comes from the database alone, so `auditor compare` can
recompute any round's findings later.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import load_only

from auditor.storage.repository import Store
from auditor.storage.tables import ProbeCaseRow, ProviderRow, SampleRow, ScoreRow


@dataclass
class Observation:
    """One sample of one endpoint, with its probe and its scores."""

    model: str
    endpoint: str
    kind: str  # provider | reference
    trusted: bool
    probe_id: str
    probe_hash: str
    sample_index: int
    ok: bool
    text: str | None
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    error_class: str | None
    case: dict[str, Any]
    scores: dict[str, float | None] = field(default_factory=dict)
    tool_calls: list[dict[str, Any]] | None = None  # OpenAI format, as the answer had them
    logprobs: list[dict[str, Any]] | None = None  # per token, OpenAI format, when returned

    @property
    def key(self) -> tuple[str, int]:
        return (self.probe_hash, self.sample_index)

    @property
    def signals(self) -> list[str]:
        return list(self.case.get("signals") or [])

    @property
    def temperature(self) -> float | None:
        return (self.case.get("params") or {}).get("temperature")

    @property
    def has_system_message(self) -> bool:
        return any(m.get("role") == "system" for m in self.case.get("messages") or [])


_SAMPLE_COLUMNS = (
    SampleRow.id, SampleRow.provider_id, SampleRow.probe_id, SampleRow.probe_hash,
    SampleRow.sample_index, SampleRow.ok, SampleRow.output_text, SampleRow.finish_reason,
    SampleRow.prompt_tokens, SampleRow.completion_tokens, SampleRow.total_tokens,
    SampleRow.error_class, SampleRow.logprobs_json, SampleRow.tool_calls_json,
)  # fmt: skip


def load_observations(store: Store, round_id: str) -> list[Observation]:
    with store.session() as s:
        rows = s.execute(
            select(SampleRow, ProviderRow)
            .options(load_only(*_SAMPLE_COLUMNS))  # not the raw payloads: memory stays small
            .join(ProviderRow, SampleRow.provider_id == ProviderRow.id)
            .where(SampleRow.round_id == round_id)
            .order_by(SampleRow.id)
        ).all()
        # Each case once, shared by its samples (not a copy of its JSON per sample).
        in_round = select(SampleRow.probe_hash).where(SampleRow.round_id == round_id)
        cases = dict(
            s.execute(
                select(ProbeCaseRow.hash, ProbeCaseRow.case).where(
                    ProbeCaseRow.hash.in_(in_round)  # type: ignore[attr-defined]
                )
            ).all()
        )
        score_rows = s.execute(
            select(ScoreRow.sample_id, ScoreRow.metric, ScoreRow.value)
            .join(SampleRow, ScoreRow.sample_id == SampleRow.id)
            .where(SampleRow.round_id == round_id)
        ).all()
    scores: dict[int, dict[str, float | None]] = defaultdict(dict)
    for sample_id, metric, value in score_rows:
        scores[sample_id][metric] = value
    return [
        Observation(
            model=provider.model,
            endpoint=provider.name,
            kind=provider.kind,
            trusted=provider.trusted,
            probe_id=sample.probe_id,
            probe_hash=sample.probe_hash,
            sample_index=sample.sample_index,
            ok=sample.ok,
            text=sample.output_text,
            finish_reason=sample.finish_reason,
            prompt_tokens=sample.prompt_tokens,
            completion_tokens=sample.completion_tokens,
            total_tokens=sample.total_tokens,
            error_class=sample.error_class,
            case=cases[sample.probe_hash],
            scores=scores.get(sample.id or 0, {}),
            tool_calls=sample.tool_calls_json,
            logprobs=sample.logprobs_json,
        )
        for sample, provider in rows
        if sample.probe_hash in cases
    ]
