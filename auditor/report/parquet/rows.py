"""The results database -> Arrow record batches of the Parquet tables (schema.py).

Samples are read in id order, `CHUNK` at a time with their scores, so memory stays flat
whatever the number of samples; findings, a round's few hundred at most, at once.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
from sqlalchemy import Engine, Text, cast, func, select

from auditor.records import as_utc
from auditor.report.parquet.schema import FIELDS, SCORE_PREFIX, schema
from auditor.report.selection import Endpoint, RoundInfo
from auditor.storage.tables import FindingRow, SampleRow, ScoreRow, core_table

CHUNK = 2000  # samples read per query

S = core_table(SampleRow).c
SC = core_table(ScoreRow).c
F = core_table(FindingRow).c

_FLOAT_PARAMS = ("temperature", "top_p", "min_p", "repetition_penalty")
_INT_PARAMS = ("top_k", "max_tokens", "seed")
_REASONING_KEYS = ("reasoning_content", "reasoning")


# --- values -------------------------------------------------------------------------------


def _float(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _finite(v: Any) -> float | None:
    """A statistic as the report contract gives it: NaN and infinities as null."""
    f = _float(v)
    return f if f is not None and math.isfinite(f) else None


def _int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return v if isinstance(v, int) and -(2**63) <= v < 2**63 else None


def _json_text(value: Any) -> str | None:
    """A JSON column read as text (`cast` to Text): None for SQL or JSON null."""
    if value is None:
        return None
    if not isinstance(value, str):  # a driver that decodes json anyway
        value = json.dumps(value, ensure_ascii=False)
    return None if value == "null" else value


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _dumps(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _message_reasoning(part: Any, key: str) -> str | None:
    """`choices[0][key]` (`message` or `delta`)'s reasoning text, if any."""
    choices = part.get("choices") if isinstance(part, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    message = choices[0].get(key)
    if not isinstance(message, dict):
        return None
    for name in _REASONING_KEYS:
        text = message.get(name)
        if isinstance(text, str) and text:
            return text
    return None


def reasoning_of(response: Any) -> str | None:
    """The reasoning text a response body carries beside its answer (`reasoning_content`, as
    vLLM, SGLang and DeepSeek send it, or `reasoning`, as OpenRouter does), streamed chunks
    joined; None when it has none."""
    if isinstance(response, dict) and isinstance(response.get("chunks"), list):
        parts = [_message_reasoning(c, "delta") for c in response["chunks"]]
        text = "".join(p for p in parts if p)
        return text or None
    return _message_reasoning(response, "message")


def upstream_of(response: Any, headers: Any) -> str | None:
    """The upstream a router says served the answer: the body's top-level `provider` (as
    OpenRouter names it; in a stream, its first chunk's), else the `x-provider` header."""
    first = response
    if isinstance(response, dict) and isinstance(response.get("chunks"), list):
        first = next((c for c in response["chunks"] if isinstance(c, dict)), None)
    if isinstance(first, dict) and isinstance(first.get("provider"), str) and first["provider"]:
        return str(first["provider"])
    if isinstance(headers, dict) and isinstance(headers.get("x-provider"), str):
        return str(headers["x-provider"]) or None
    return None


def _response_extras(response_text: str | None, headers: Any) -> tuple[str | None, str | None]:
    """(reasoning, upstream) of a stored response body; the body is parsed only when it can
    hold either (most cannot: it is read for every sample)."""
    body = None
    if response_text and ('"reasoning' in response_text or '"provider"' in response_text):
        body = json.loads(response_text)
    return reasoning_of(body), upstream_of(body, headers)


# --- samples ------------------------------------------------------------------------------

_SAMPLE_COLUMNS = (
    S.id,
    S.round_id,
    S.provider_id,
    S.probe_id,
    S.probe_hash,
    S.sample_index,
    S.ok,
    S.status_code,
    S.error_class,
    S.error_message,
    S.output_text,
    S.finish_reason,
    S.prompt_tokens,
    S.completion_tokens,
    S.total_tokens,
    S.cost,
    S.latency_ms,
    S.ttft_ms,
    S.attempts,
    S.cached,
    S.served_model,
    S.reasoning_text,
    S.upstream,
    cast(S.request_json, Text),
    cast(S.response_json, Text),
    cast(S.tool_calls_json, Text),
    cast(S.response_headers, Text),
    S.started_at,
    S.created_at,
)


def _id_bounds(engine: Engine, rounds: list[RoundInfo]) -> tuple[int, int] | None:
    """The smallest and largest sample id of these rounds (every chunk query is kept within
    them: a scan in id order never starts at the beginning of the table)."""
    with engine.connect() as conn:
        lo, hi = conn.execute(
            select(func.min(S.id), func.max(S.id)).where(S.round_id.in_([r.id for r in rounds]))
        ).one()
    return None if lo is None else (lo, hi)


def _metrics(
    engine: Engine, rounds: list[RoundInfo], endpoints: list[Endpoint], bounds: tuple[int, int]
) -> list[str]:
    """The metrics scored on these samples, sorted."""
    with engine.connect() as conn:
        found = conn.execute(
            select(SC.metric)
            .distinct()
            .join_from(core_table(ScoreRow), core_table(SampleRow), SC.sample_id == S.id)
            .where(
                S.id.between(*bounds),
                S.round_id.in_([r.id for r in rounds]),
                S.provider_id.in_([e.id for e in endpoints]),
            )
        ).scalars()
        return sorted(found)


Scores = dict[int, dict[str, float | None]]


def _sample_chunks(
    engine: Engine, rounds: list[RoundInfo], endpoints: list[Endpoint], bounds: tuple[int, int]
) -> Iterator[tuple[Sequence[Any], Scores]]:
    """The samples of these rounds and endpoints in id order, `CHUNK` at a time, each chunk
    with its scores (sample id -> metric -> value; the latest score of a metric wins)."""
    round_ids = [r.id for r in rounds]
    endpoint_ids = [e.id for e in endpoints]
    last, hi = bounds[0] - 1, bounds[1]
    while True:
        with engine.connect() as conn:
            rows = conn.execute(
                select(*_SAMPLE_COLUMNS)
                .where(
                    S.id > last,
                    S.id <= hi,
                    S.round_id.in_(round_ids),
                    S.provider_id.in_(endpoint_ids),
                )
                .order_by(S.id)
                .limit(CHUNK)
            ).all()
            if not rows:
                return
            scores: Scores = defaultdict(dict)
            for sample_id, metric, value in conn.execute(
                select(SC.sample_id, SC.metric, SC.value)
                .where(SC.sample_id.in_([r[0] for r in rows]))
                .order_by(SC.id)
            ):
                scores[sample_id][metric] = value
        yield rows, scores
        last = rows[-1][0]


def _sample_batch(
    rows: Sequence[Any],
    scores: Scores,
    rounds: dict[str, RoundInfo],
    endpoints: dict[int, Endpoint],
    target: pa.Schema,
    metrics: list[str],
) -> pa.RecordBatch:
    columns: dict[str, list[Any]] = {name: [] for name in target.names}
    add = {name: values.append for name, values in columns.items()}
    for row in rows:
        (sid, round_id, provider_id, probe_id, probe_hash, sample_index, ok, status_code,
         error_class, error_message, output_text, finish_reason, prompt_tokens,
         completion_tokens, total_tokens, cost, latency_ms, ttft_ms, attempts, cached,
         served_model, reasoning_text, upstream_name, request_text, response_text,
         tool_calls_text, headers_text, started_at, created_at) = row  # fmt: skip
        r, e = rounds[round_id], endpoints[provider_id]
        body = _loads(_json_text(request_text))
        if not isinstance(body, dict):
            body = {}
        headers_text = _json_text(headers_text)
        # Stored apart since schema 0009; read from the body for samples stored before.
        reasoning, upstream = reasoning_text, upstream_name
        if reasoning is None and upstream is None:
            reasoning, upstream = _response_extras(
                _json_text(response_text), _loads(headers_text) if headers_text else None
            )
        add["day"](r.day)
        add["model"](e.model)
        add["round_id"](round_id)
        add["suite"](r.suite)
        add["round_started_at"](r.started_at)
        add["sample_id"](sid)
        add["provider"](e.name)
        add["provider_kind"](e.kind)
        add["probe_id"](probe_id)
        add["probe_hash"](probe_hash)
        add["sample_index"](sample_index)
        for name in _FLOAT_PARAMS:
            add[name](_float(body.get(name)))
        for name in _INT_PARAMS:
            add[name](_int(body.get(name)))
        add["stream"](body.get("stream") is True)
        params = {k: v for k, v in body.items() if k != "messages"}
        add["request_params"](_dumps(params) if params else None)
        add["ok"](bool(ok))
        add["status_code"](status_code)
        add["error_class"](error_class)
        add["error_message"](error_message)
        add["output_text"](output_text)
        add["reasoning"](reasoning)
        add["tool_calls"](_json_text(tool_calls_text))
        add["finish_reason"](finish_reason)
        add["prompt_tokens"](prompt_tokens)
        add["completion_tokens"](completion_tokens)
        add["total_tokens"](total_tokens)
        add["cost"](cost)
        add["latency_ms"](latency_ms)
        add["ttft_ms"](ttft_ms)
        add["attempts"](attempts)
        add["cached"](bool(cached))
        add["served_model"](served_model)
        add["upstream"](upstream)
        add["response_headers"](headers_text)
        add["started_at"](as_utc(started_at))
        add["created_at"](as_utc(created_at))
        own = scores.get(sid, {})
        for m in metrics:
            add[SCORE_PREFIX + m](_float(own.get(m)))
    return pa.RecordBatch.from_arrays(
        [pa.array(columns[f.name], type=f.type) for f in target], schema=target
    )


def sample_batches(
    engine: Engine,
    rounds: list[RoundInfo],
    endpoints: list[Endpoint],
    metrics: list[str] | None = None,
) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """The samples of these rounds and endpoints (with their scores pivoted) as record
    batches of at most `CHUNK` rows, in sample id order, and their schema: one score column
    per metric scored on them (or per metric of `metrics`)."""
    bounds = _id_bounds(engine, rounds) if rounds and endpoints else None
    if metrics is None:
        metrics = _metrics(engine, rounds, endpoints, bounds) if bounds else []
    target = schema("samples", metrics)
    by_round = {r.id: r for r in rounds}
    by_id = {e.id: e for e in endpoints}

    def batches() -> Iterator[pa.RecordBatch]:
        if bounds is None:
            return
        for rows, scores in _sample_chunks(engine, rounds, endpoints, bounds):
            yield _sample_batch(rows, scores, by_round, by_id, target, metrics)

    return target, batches()


# --- findings -----------------------------------------------------------------------------


def _honest_range(t: dict[str, Any]) -> tuple[float | None, float | None]:
    band = t.get("honest_range")
    if not isinstance(band, list | tuple) or len(band) != 2:
        return None, None
    return _finite(band[0]), _finite(band[1])


def finding_batches(
    engine: Engine, rounds: list[RoundInfo], endpoints: list[Endpoint]
) -> dict[str, pa.RecordBatch]:
    """The findings of these rounds for these endpoints (by model and name), flattened into
    the `findings`, `tests` and `diagnoses` tables, in round then provider order."""
    tables: dict[str, dict[str, list[Any]]] = {
        t: {f.name: [] for f in FIELDS[t]} for t in ("findings", "tests", "diagnoses")
    }
    by_round = {r.id: r for r in rounds}
    pairs = {(e.model, e.name) for e in endpoints if e.kind == "provider"}
    models = sorted({m for m, _ in pairs})
    rows: list[Any] = []
    if rounds and pairs:
        with engine.connect() as conn:
            rows = [
                row
                for row in conn.execute(
                    select(core_table(FindingRow))
                    .where(F.round_id.in_(list(by_round)), F.model.in_(models))
                    .order_by(F.round_started_at, F.round_id, F.model, F.provider, F.id)
                ).mappings()
                if (row["model"], row["provider"]) in pairs
            ]
    for row in rows:
        r = by_round[row["round_id"]]
        keys = {
            "day": r.day,
            "model": row["model"],
            "round_id": r.id,
            "suite": r.suite,
            "round_started_at": r.started_at,
            "finding_id": row["id"],
            "provider": row["provider"],
        }
        diagnoses = [d for d in row["diagnoses"] or [] if isinstance(d, dict)]
        top = diagnoses[0] if diagnoses else {}
        window = row["context_window"] if isinstance(row["context_window"], dict) else {}
        _append(
            tables["findings"],
            {
                **keys,
                "baseline": row["baseline"],
                "verdict": row["verdict"],
                "severity": row["severity"],
                "top_diagnosis": top.get("kind"),
                "top_confidence": _float(top.get("confidence")),
                "requests": row["requests"],
                "errors": row["errors"],
                "tokens": row["tokens"],
                "cost": _finite(row["cost"]),
                "errors_by_class": _dumps(row["errors_by_class"]),
                "effective_window": window.get("effective"),
                "effective_window_lower_bound": window.get("lower_bound"),
                "evidence": _dumps(row["evidence"]),
                "detector": row["detector"],
                "detector_params": _dumps(row["detector_params"]),
                "created_at": as_utc(row["created_at"]),
            },
        )
        for t in row["tests"] or []:
            if not isinstance(t, dict):
                continue
            low, high = _honest_range(t)
            _append(
                tables["tests"],
                {
                    **keys,
                    "verdict": row["verdict"],
                    "test": t.get("name"),
                    "status": t.get("status") or "tested",
                    "statistic": _finite(t.get("statistic")),
                    "p_value": _finite(t.get("p_value")),
                    "effect": _finite(t.get("effect")),
                    "honest_low": low,
                    "honest_high": high,
                    "n": _int(t.get("n")),
                    "note": t.get("note"),
                },
            )
        for rank, d in enumerate(diagnoses):
            _append(
                tables["diagnoses"],
                {
                    **keys,
                    "verdict": row["verdict"],
                    "rank": rank,
                    "kind": d.get("kind"),
                    "confidence": _float(d.get("confidence")),
                    "summary": d.get("summary"),
                },
            )
    out = {}
    for name, columns in tables.items():
        target = schema(name)
        out[name] = pa.RecordBatch.from_arrays(
            [pa.array(columns[f.name], type=f.type) for f in target], schema=target
        )
    return out


def _append(columns: dict[str, list[Any]], row: dict[str, Any]) -> None:
    for name, values in columns.items():
        values.append(row[name])
