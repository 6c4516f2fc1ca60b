"""The Parquet export's tables and their columns (schema version 1), documented column by
column in docs/research.md (a test holds the two to the same names and types).

Every table starts with the partition keys `day` (the UTC date its round started) and
`model`, then its round (`round_id`, `suite`, `round_started_at`). The samples table ends
with one `score_<metric>` column (float64) per metric scored on the samples of the file: a
file holds the metrics its own samples have, so readers take the union of the files'
columns by name, a metric a file lacks reading as null.

`SCHEMA_VERSION` is written in every file's key-value metadata (`auditor.schema_version`),
beside `auditor.table` and `auditor.version`. It changes when a column is removed, renamed or
changes type, never when one is added.
"""

from __future__ import annotations

import pyarrow as pa

from auditor import __version__

SCHEMA_VERSION = "1"
MEDIA_TYPE = "application/vnd.apache.parquet"
SCORE_PREFIX = "score_"
TABLES = ("samples", "findings", "tests", "diagnoses")

TS = pa.timestamp("us", tz="UTC")
_KEYS = [
    pa.field("day", pa.date32()),
    pa.field("model", pa.string()),
    pa.field("round_id", pa.string()),
    pa.field("suite", pa.string()),
    pa.field("round_started_at", TS),
]
SAMPLE_FIELDS = [
    *_KEYS,
    pa.field("sample_id", pa.int64()),
    pa.field("provider", pa.string()),
    pa.field("provider_kind", pa.string()),
    pa.field("probe_id", pa.string()),
    pa.field("probe_hash", pa.string()),
    pa.field("sample_index", pa.int64()),
    pa.field("temperature", pa.float64()),
    pa.field("top_p", pa.float64()),
    pa.field("top_k", pa.int64()),
    pa.field("min_p", pa.float64()),
    pa.field("repetition_penalty", pa.float64()),
    pa.field("max_tokens", pa.int64()),
    pa.field("seed", pa.int64()),
    pa.field("stream", pa.bool_()),
    pa.field("request_params", pa.string()),
    pa.field("ok", pa.bool_()),
    pa.field("status_code", pa.int64()),
    pa.field("error_class", pa.string()),
    pa.field("error_message", pa.string()),
    pa.field("output_text", pa.string()),
    pa.field("reasoning", pa.string()),
    pa.field("tool_calls", pa.string()),
    pa.field("finish_reason", pa.string()),
    pa.field("prompt_tokens", pa.int64()),
    pa.field("completion_tokens", pa.int64()),
    pa.field("total_tokens", pa.int64()),
    pa.field("cost", pa.float64()),
    pa.field("latency_ms", pa.float64()),
    pa.field("ttft_ms", pa.float64()),
    pa.field("attempts", pa.int64()),
    pa.field("cached", pa.bool_()),
    pa.field("served_model", pa.string()),
    pa.field("upstream", pa.string()),
    pa.field("response_headers", pa.string()),
    pa.field("started_at", TS),
    pa.field("created_at", TS),
]
# The columns `auditor.results`' scores() keeps beside the score columns.
SCORE_KEYS = (
    "day",
    "model",
    "round_id",
    "suite",
    "round_started_at",
    "sample_id",
    "provider",
    "provider_kind",
    "probe_id",
    "probe_hash",
    "sample_index",
)
_FINDING_KEYS = [
    *_KEYS,
    pa.field("finding_id", pa.int64()),
    pa.field("provider", pa.string()),
]
FINDING_FIELDS = [
    *_FINDING_KEYS,
    pa.field("baseline", pa.string()),
    pa.field("verdict", pa.string()),
    pa.field("severity", pa.string()),
    pa.field("top_diagnosis", pa.string()),
    pa.field("top_confidence", pa.float64()),
    pa.field("requests", pa.int64()),
    pa.field("errors", pa.int64()),
    pa.field("tokens", pa.int64()),
    pa.field("cost", pa.float64()),
    pa.field("errors_by_class", pa.string()),
    pa.field("effective_window", pa.int64()),
    pa.field("effective_window_lower_bound", pa.int64()),
    pa.field("evidence", pa.string()),
    pa.field("detector", pa.string()),
    pa.field("detector_params", pa.string()),
    pa.field("created_at", TS),
]
TEST_FIELDS = [
    *_FINDING_KEYS,
    pa.field("verdict", pa.string()),
    pa.field("test", pa.string()),
    pa.field("status", pa.string()),
    pa.field("statistic", pa.float64()),
    pa.field("p_value", pa.float64()),
    pa.field("effect", pa.float64()),
    pa.field("honest_low", pa.float64()),
    pa.field("honest_high", pa.float64()),
    pa.field("n", pa.int64()),
    pa.field("note", pa.string()),
]
DIAGNOSIS_FIELDS = [
    *_FINDING_KEYS,
    pa.field("verdict", pa.string()),
    pa.field("rank", pa.int64()),
    pa.field("kind", pa.string()),
    pa.field("confidence", pa.float64()),
    pa.field("summary", pa.string()),
]
FIELDS = {
    "samples": SAMPLE_FIELDS,
    "findings": FINDING_FIELDS,
    "tests": TEST_FIELDS,
    "diagnoses": DIAGNOSIS_FIELDS,
}


def schema(table: str, metrics: list[str] | None = None) -> pa.Schema:
    """A table's Arrow schema (samples: with one score column per metric, in the order
    given), with the export's metadata."""
    fields = list(FIELDS[table])
    fields += [pa.field(SCORE_PREFIX + m, pa.float64()) for m in metrics or []]
    return pa.schema(fields).with_metadata(
        {
            "auditor.schema_version": SCHEMA_VERSION,
            "auditor.table": table,
            "auditor.version": __version__,
        }
    )
