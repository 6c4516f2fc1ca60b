"""Samples -> JSONL or CSV for researchers, streamed so memory stays flat."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import Any, TextIO

from auditor.records import as_utc
from auditor.storage.repository import Store

FLAT_FIELDS = (
    "sample_id",
    "round_id",
    "model",
    "provider",
    "provider_kind",
    "probe_id",
    "probe_hash",
    "sample_index",
    "ok",
    "status_code",
    "error_class",
    "error_message",
    "output_text",
    "reasoning_text",
    "reasoning_source",
    "reasoning_tokens",
    "upstream",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost",
    "latency_ms",
    "ttft_ms",
    "attempts",
    "served_model",
    "started_at",
)
JSON_FIELDS = (
    "request_json",
    "response_json",
    "logprobs_json",
    "tool_calls_json",
    "response_headers",
)


def sample_records(store: Store, round_id: str | None) -> Iterator[dict[str, Any]]:
    for sample, provider in store.iter_samples(round_id):
        yield {
            "sample_id": sample.id,
            "round_id": sample.round_id,
            "model": provider.model,
            "provider": provider.name,
            "provider_kind": provider.kind,
            "probe_id": sample.probe_id,
            "probe_hash": sample.probe_hash,
            "sample_index": sample.sample_index,
            "ok": sample.ok,
            "status_code": sample.status_code,
            "error_class": sample.error_class,
            "error_message": sample.error_message,
            "output_text": sample.output_text,
            "reasoning_text": sample.reasoning_text,
            "reasoning_source": sample.reasoning_source,
            "reasoning_tokens": sample.reasoning_tokens,
            "upstream": sample.upstream,
            "finish_reason": sample.finish_reason,
            "prompt_tokens": sample.prompt_tokens,
            "completion_tokens": sample.completion_tokens,
            "total_tokens": sample.total_tokens,
            "cost": sample.cost,
            "latency_ms": sample.latency_ms,
            "ttft_ms": sample.ttft_ms,
            "attempts": sample.attempts,
            "served_model": sample.served_model,
            "started_at": as_utc(sample.started_at).isoformat() if sample.started_at else None,
            **{f: getattr(sample, f) for f in JSON_FIELDS},
        }


def write_jsonl(records: Iterator[dict[str, Any]], out: TextIO) -> int:
    n = 0
    for rec in records:
        out.write(json.dumps(rec, ensure_ascii=False) + "\n")
        n += 1
    return n


def write_csv(records: Iterator[dict[str, Any]], out: TextIO) -> int:
    """Plain columns as they are; raw payloads as JSON text in their own columns."""
    writer = csv.DictWriter(out, fieldnames=[*FLAT_FIELDS, *JSON_FIELDS])
    writer.writeheader()
    n = 0
    for rec in records:
        writer.writerow(
            {k: json.dumps(v) if k in JSON_FIELDS and v is not None else v for k, v in rec.items()}
        )
        n += 1
    return n
