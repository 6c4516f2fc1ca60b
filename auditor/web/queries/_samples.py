"""Samples: the filtered list (no raw payloads), and one stored exchange in full."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, func, select, union_all

from auditor.records import Evidence, as_utc
from auditor.storage.repository import Store
from auditor.web.queries.common import P, S, _at
from auditor.web.queries.paging import MAX_ID, _decode_cursor, _encode_cursor, _limit, _storable
from auditor.web.views import EvidenceSamples, Page, SampleDetail, SampleView

SCAN_WINDOW = 100_000  # ids a page of samples filtered on ok or error_class reads at most

# A sample as listed: every column but the raw payloads (request, response, logprobs...).
_SAMPLE_VIEW_COLUMNS = (
    S.c.id,
    S.c.round_id,
    P.c.model,
    P.c.name.label("provider"),
    S.c.probe_id,
    S.c.sample_index,
    S.c.ok,
    S.c.status_code,
    S.c.error_class,
    S.c.output_text,
    S.c.finish_reason,
    S.c.total_tokens,
    S.c.latency_ms,
    S.c.created_at,
    S.c.reasoning_text,
    S.c.reasoning_source,
    S.c.reasoning_tokens,
    S.c.upstream,
)


def samples(
    store: Store,
    *,
    round_id: str | None = None,
    model: str | None = None,
    provider: str | None = None,
    probe_id: str | None = None,
    ok: bool | None = None,
    error_class: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Page[SampleView]:
    """Samples, newest first (ids follow the order they were stored), filtered.

    A page reads an index in id order and stops when it is full: `(round_id, id)` for a
    round, `(provider_id, id)` for each matching endpoint (several endpoints: one such range
    each, merged), `(probe_id, id)` for a probe. So it never sorts every match, however many
    there are.

    `ok` and `error_class` have no index that keeps id order: a class that never occurred
    would read every sample (every sample of the provider or probe given). So unless a
    round bounds the search, a page with either filter looks at `SCAN_WINDOW` ids at most
    and may come back short, even empty, with a `next_cursor` to go on from where it
    stopped."""
    limit = _limit(limit)
    if not _storable(round_id, model, provider, probe_id, error_class):
        return Page(items=[], next_cursor=None)
    with store.session() as s:
        provider_ids = None
        if model is not None or provider is not None:
            # The few matching endpoints first, so that samples are read by provider_id.
            ids = select(P.c.id)
            if model is not None:
                ids = ids.where(P.c.model == model)
            if provider is not None:
                ids = ids.where(P.c.name == provider)
            provider_ids = sorted(s.execute(ids).scalars())
            if not provider_ids:
                return Page(items=[], next_cursor=None)
        # Within a round, only the round's range of (round_id, id) may serve, so the other
        # filters are written as expressions no index serves: SQLite (no statistics) would
        # rather walk a provider's or a probe's range back past the round, and PostgreSQL
        # intersects the round with the probe's whole range.
        in_round = round_id is not None
        probe_column = S.c.probe_id + "" if in_round else S.c.probe_id
        provider_column = S.c.provider_id + 0 if in_round else S.c.provider_id
        where = [
            column == value
            for column, value in (
                (S.c.round_id, round_id),
                (probe_column, probe_id),
                (S.c.ok, ok),
                (S.c.error_class, error_class),
            )
            if value is not None
        ]
        upper = None
        if cursor is not None:
            (upper,) = _decode_cursor(cursor, "samples", (int,))
            where.append(S.c.id < upper)
        window_low = None
        unindexed = ok is not None or error_class is not None
        if unindexed and round_id is None:
            if upper is None:
                upper = (s.execute(select(func.max(S.c.id))).scalar() or 0) + 1
            window_low = upper - SCAN_WINDOW
            where.append(S.c.id >= window_low)
        each_provider = None
        if provider_ids is not None:
            # (a window bounds the read already; per endpoint, an endpoint with no match
            # would read the whole window)
            if not in_round and window_low is None and len(provider_ids) > 1:
                each_provider = provider_ids
            else:
                where.append(provider_column.in_(provider_ids))
        rows = s.execute(_newest(where, limit + 1, each_provider)).all()
        next_cursor = None
        if len(rows) > limit:
            next_cursor = _encode_cursor("samples", rows[limit - 1].id)
        elif window_low is not None:
            lowest = s.execute(select(func.min(S.c.id))).scalar()
            if lowest is not None and lowest < window_low:
                next_cursor = _encode_cursor("samples", window_low)
    return Page(items=[_sample_view(r) for r in rows[:limit]], next_cursor=next_cursor)


def _newest(
    where: list[ColumnElement[bool]], n: int, each_provider: list[int] | None = None
) -> Select[Any]:
    """The newest `n` samples that match `where`; with `each_provider`, the newest `n` of
    each of those endpoints (one range of (provider_id, id) each), then the newest `n` of
    them all: `provider_id IN (...)` would read every match of every endpoint and sort them."""
    if each_provider is not None:
        heads = union_all(
            *(select(_newest([*where, S.c.provider_id == i], n).subquery()) for i in each_provider)
        ).subquery()
        return select(heads).order_by(heads.c.id.desc()).limit(n)
    return (
        select(*_SAMPLE_VIEW_COLUMNS)
        .join(P, P.c.id == S.c.provider_id)
        .where(*where)
        .order_by(S.c.id.desc())
        .limit(n)
    )


def _sample_view(r: Any) -> SampleView:
    return SampleView.model_validate({**r._mapping, "created_at": as_utc(r.created_at)})


def sample(store: Store, sample_id: int) -> SampleDetail | None:
    """One stored exchange with its raw request and response bodies."""
    if not 0 < sample_id <= MAX_ID:
        return None
    with store.session() as s:
        r = s.execute(
            select(
                *_SAMPLE_VIEW_COLUMNS,
                S.c.error_message,
                S.c.request_json,
                S.c.response_json,
                S.c.probe_hash,
                S.c.prompt_tokens,
                S.c.completion_tokens,
                S.c.cost,
                S.c.ttft_ms,
                S.c.attempts,
                S.c.cached,
                S.c.served_model,
                S.c.tool_calls_json,
                S.c.started_at,
            )
            .join(P, P.c.id == S.c.provider_id)
            .where(S.c.id == sample_id)
        ).first()
    if r is None:
        return None
    return SampleDetail.model_validate(
        {
            **r._mapping,
            "created_at": as_utc(r.created_at),
            "started_at": _at(r.started_at),
            "request_json": r.request_json or {},
        }
    )


def evidence_samples(
    store: Store, round_id: str, model: str, provider: str, evidence: list[Evidence]
) -> list[EvidenceSamples]:
    """The stored samples behind each evidence pair of a finding, in the pair's order: the
    provider's and the reference's answer to the pair's probe in the finding's round (its
    first sample, the one evidence is picked from) whose text the pair quotes (it keeps the
    answer's start). A side none matches (a refusal, a reference answer from another round)
    has None. Reads the round's first samples of those probes, of the provider and the
    model's references only."""
    if not evidence or not _storable(round_id, model, provider):
        return [EvidenceSamples() for _ in evidence]
    with store.session() as s:
        endpoints = s.execute(select(P.c.id, P.c.name, P.c.kind).where(P.c.model == model)).all()
        own = {e.id for e in endpoints if e.name == provider and e.kind != "reference"}
        references = {e.id for e in endpoints if e.kind == "reference" and e.name != provider}
        rows = s.execute(
            select(*_SAMPLE_VIEW_COLUMNS, S.c.provider_id)
            .join(P, P.c.id == S.c.provider_id)
            .where(
                S.c.round_id == round_id,
                S.c.provider_id.in_(sorted(own | references)),
                S.c.probe_id.in_(sorted({e.probe for e in evidence})),
                S.c.sample_index == 0,
                S.c.ok.is_(True),
            )
            .order_by(S.c.id)
        ).all()

    def quoted(endpoints: set[int], probe: str, text: str) -> SampleView | None:
        return next(
            (
                _sample_view(r)
                for r in rows
                if r.provider_id in endpoints
                and r.probe_id == probe
                and (r.output_text or "").startswith(text)
            ),
            None,
        )

    return [
        EvidenceSamples(
            reference=quoted(references, e.probe, e.reference),
            provider=quoted(own, e.probe, e.provider),
        )
        for e in evidence
    ]
