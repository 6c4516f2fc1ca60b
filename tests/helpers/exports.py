"""A results database for the export tests, written through the real Store, with every kind
of value the Parquet schema carries: two days of rounds of two suites, two models (one with
a slash in its name) whose samples were scored on different metrics, the reference, request
parameters, failures, a stream, reasoning, a router's upstream, tool calls, findings with
tests (one statistic NaN on SQLite, which keeps it) and diagnoses.

`build()` records, in plain Python, the row every sample and finding must become in the
export (`Facts`), so the tests compare the files against what was written, never against
the code under test.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import update

from auditor.records import (
    CompletionRequest,
    CompletionResponse,
    ContextWindow,
    Diagnosis,
    ErrorClass,
    Evidence,
    Finding,
    Message,
    ProbeCase,
    ScoreRecord,
    TestResult,
    Usage,
)
from auditor.storage.repository import Store
from auditor.storage.tables import RoundRow
from helpers.db import new_store

DAY1, DAY2 = date(2025, 3, 1), date(2025, 3, 2)
# id -> (suite, start): d1-late starts on day 1, near midnight; ids not in time order
ROUNDS = {
    "r-b": ("core", datetime(2025, 3, 1, 9, 30, tzinfo=UTC)),
    "r-a": ("tools", datetime(2025, 3, 1, 23, 50, tzinfo=UTC)),
    "r-c": ("core", datetime(2025, 3, 2, 8, 0, tzinfo=UTC)),
}
M1, M2 = "m1", "org/m2"  # M2's partition directory is model=org%2Fm2
ENDPOINTS = [(M1, "acme"), (M1, "bolt"), (M1, "reference"), (M2, "acme"), (M2, "reference")]
METRICS = {M1: ("chars", "expect_pass"), M2: ("chars", "likelihood")}
PROBES = ("greedy", "sampled")
SAMPLES_PER_PROBE = 2


@dataclass
class Facts:
    store: Store
    url: str
    providers: dict[tuple[str, str], int]
    samples: dict[int, dict[str, Any]] = field(default_factory=dict)  # id -> export row
    findings: list[dict[str, Any]] = field(default_factory=list)  # keys + finding columns
    tests: list[dict[str, Any]] = field(default_factory=list)
    diagnoses: list[dict[str, Any]] = field(default_factory=list)

    def sample_rows(self, **where: Any) -> list[dict[str, Any]]:
        """The expected sample rows matching `where` (column -> value or set of values)."""
        return [
            row
            for _, row in sorted(self.samples.items())
            if all(
                row[k] in v if isinstance(v, set | frozenset) else row[k] == v
                for k, v in where.items()
            )
        ]


def _params(probe: str, k: int) -> dict[str, Any]:
    if probe == "greedy":
        return {"temperature": 0, "max_tokens": 16, "seed": 7}
    return {"temperature": 0.8, "top_p": 0.9, "top_k": 40, "min_p": 0.05, "max_tokens": 32}


def build(url: str) -> Facts:
    store = new_store(url)
    nan = url.startswith("sqlite")  # PostgreSQL's JSON cannot hold NaN
    providers = {}
    for model, name in ENDPOINTS:
        kind = "reference" if name == "reference" else "provider"
        providers[(model, name)] = store.upsert_provider(
            model, name, kind=kind, base_url=None, model_id=f"{model}@{name}", config={}
        )
    cases = {
        p: ProbeCase(id=p, suite="core", messages=[Message(role="user", content=f"say {p}")])
        for p in PROBES
    }
    store.upsert_probe_cases(list(cases.values()))
    facts = Facts(store, url, providers)
    n = 0
    for rid, (suite, start) in ROUNDS.items():
        store.start_round(RoundRow(id=rid, suite=suite, suite_hash="h", auditor_version="t"))
        with store.session() as s:
            s.execute(update(RoundRow).where(RoundRow.id == rid).values(started_at=start))
            s.commit()
        for model, name in ENDPOINTS:
            for probe in PROBES:
                for k in range(SAMPLES_PER_PROBE):
                    n += 1
                    _add_sample(facts, rid, suite, start, model, name, cases[probe], k, n)
        store.finish_round(rid, "complete", None)
        _add_findings(facts, rid, suite, start, nan)
    return facts


def _add_sample(
    facts: Facts,
    rid: str,
    suite: str,
    start: datetime,
    model: str,
    name: str,
    case: ProbeCase,
    k: int,
    n: int,
) -> None:
    params = _params(case.id, k)
    stream = name == "bolt" and k == 1
    body: dict[str, Any] = {"model": f"{model}@{name}", "messages": [], **params}
    if stream:
        body["stream"] = True
    failed = n % 7 == 3
    # bolt's greedy answers are the reference's, word for word; acme's never are
    speaker = "reference" if case.id == "greedy" and name == "bolt" else name
    text = None if failed else f"{speaker} says {case.id} #{k} in {rid} ünïcode"
    reasoning = upstream = None
    raw: dict[str, Any] | None = None
    headers: dict[str, str] = {}
    tool_calls = None
    if not failed:
        if stream:
            reasoning, upstream = f"think {n}, then answer", "Together"
            raw = {
                "chunks": [
                    {"provider": upstream, "choices": [{"delta": {"reasoning_content": "think "}}]},
                    {"choices": [{"delta": {"reasoning_content": f"{n}, then answer"}}]},
                    {"choices": [{"delta": {"content": text}, "finish_reason": "stop"}]},
                ]
            }
        elif name == "acme" and k == 0:
            reasoning = f"because {n}"
            raw = {"choices": [{"message": {"content": text, "reasoning": reasoning}}]}
            headers = {"server": "vllm/0.6", "x-provider": "acme-eu"}
            upstream = "acme-eu"
        else:
            raw = {"choices": [{"message": {"content": text}}]}
        if case.id == "greedy" and name == "acme" and model == M1:
            tool_calls = [{"id": "c0", "type": "function", "function": {"name": "f"}}]
    error = ErrorClass.SERVER_ERROR if failed else None
    tokens = None if failed else 10 + n % 5
    response = CompletionResponse(
        ok=not failed,
        status_code=503 if failed else 200,
        error_class=error,
        error_message="HTTP 503 after retries" if failed else None,
        text=text,
        finish_reason=None if failed else ("length" if n % 4 == 0 else "stop"),
        tool_calls=tool_calls,
        usage=Usage(prompt_tokens=8, completion_tokens=tokens - 8, total_tokens=tokens)
        if tokens
        else Usage(),
        served_model=None if failed else f"{model}-served",
        raw_request=body,
        raw_response=raw,
        headers=headers,
        latency_s=None if failed else n / 1000,
        ttft_s=n / 4000 if stream and not failed else None,
        attempts=3 if failed else 1,
        cached=name == "reference" and k == 1,
    )
    scores = []
    values: dict[str, float | None] = {}
    if not failed:
        first, second = METRICS[model]
        values = {first: float(len(text or "")), second: None if n % 5 == 0 else n / 100}
        scores = [ScoreRecord(scorer="t", metric=m, value=v) for m, v in values.items()]
    cost = None if failed or name == "reference" else n * 1e-6
    request = CompletionRequest.from_case(case, k)
    sample_id = facts.store.add_sample(
        rid, facts.providers[(model, name)], request, response, scores, cost
    )
    assert sample_id is not None
    request_params = {k2: v for k2, v in body.items() if k2 != "messages"}
    facts.samples[sample_id] = {
        "day": start.date(),
        "model": model,
        "round_id": rid,
        "suite": suite,
        "round_started_at": start,
        "sample_id": sample_id,
        "provider": name,
        "provider_kind": "reference" if name == "reference" else "provider",
        "probe_id": case.id,
        "probe_hash": case.content_hash,
        "sample_index": k,
        "temperature": float(params["temperature"]),
        "top_p": params.get("top_p"),
        "top_k": params.get("top_k"),
        "min_p": params.get("min_p"),
        "repetition_penalty": None,
        "max_tokens": params["max_tokens"],
        "seed": params.get("seed"),
        "stream": stream,
        "request_params": request_params,  # compared as JSON
        "ok": not failed,
        "status_code": 503 if failed else 200,
        "error_class": error.value if error else None,
        "error_message": response.error_message,
        "output_text": text,
        "reasoning": reasoning,
        "tool_calls": tool_calls,  # compared as JSON
        "finish_reason": response.finish_reason,
        "prompt_tokens": response.usage.prompt_tokens,
        "completion_tokens": response.usage.completion_tokens,
        "total_tokens": tokens,
        "cost": cost,
        "latency_ms": None if failed else float(n),
        "ttft_ms": n / 4 if stream and not failed else None,
        "attempts": response.attempts,
        "cached": response.cached,
        "served_model": response.served_model,
        "upstream": upstream,
        "response_headers": headers or None,  # compared as JSON
        **{f"score_{m}": v for m, v in values.items()},
    }


def _add_findings(facts: Facts, rid: str, suite: str, start: datetime, nan: bool) -> None:
    found = []
    for i, (model, name) in enumerate(e for e in ENDPOINTS if e[1] != "reference"):
        deviant = name == "acme" and rid != "r-b"
        tests = [
            TestResult(
                name="rate:expect_pass",
                statistic=float("nan") if nan and i == 0 else 0.25 + i,
                p_value=0.01 * (i + 1),
                effect=-0.5,
                honest_range=(-0.2, 0.2),
                n=8,
            ),
            TestResult(
                name="greedy:exact_match",
                statistic=0.75,
                p_value=None,
                effect=None,
                n=4,
                status="figure",
            ),
            TestResult(
                name="reference_likelihood",
                statistic=None,
                p_value=None,
                effect=None,
                n=0,
                status="not_available",
                note="no tokenizer",
            ),
        ]
        diagnoses = (
            [
                Diagnosis(kind="quantization", confidence=0.8, summary="weights moved"),
                Diagnosis(kind="sampling_params", confidence=0.4, summary="samples wider"),
            ]
            if deviant
            else []
        )
        found.append(
            Finding(
                model=model,
                provider=name,
                baseline="reference",
                verdict="deviant" if deviant else "consistent",
                severity="critical" if deviant else "info",
                diagnoses=diagnoses,
                tests=tests,
                evidence=[Evidence(probe="greedy", reference="a", provider="b", note="n")]
                if deviant
                else [],
                requests=8,
                errors=1,
                tokens=100 + i,
                cost=0.5 if name == "acme" else None,
                errors_by_class={"server_error": 1},
                context_window=ContextWindow(
                    declared=8192,
                    effective=992 + i,
                    lower_bound=None if deviant else 496,
                    breaks_at=1488 if deviant else None,
                    summary="s",
                    requests=24,
                    tokens=30_000,
                )
                if name == "acme"
                else None,
            )
        )
    facts.store.save_findings(rid, found, "test-detector", {"alpha": 0.05})
    for f in found:
        keys = {
            "day": start.date(),
            "model": f.model,
            "round_id": rid,
            "suite": suite,
            "round_started_at": start,
            "provider": f.provider,
        }
        top = f.diagnoses[0] if f.diagnoses else None
        facts.findings.append(
            {
                **keys,
                "baseline": f.baseline,
                "verdict": f.verdict,
                "severity": f.severity,
                "top_diagnosis": top.kind if top else None,
                "top_confidence": top.confidence if top else None,
                "requests": f.requests,
                "errors": f.errors,
                "tokens": f.tokens,
                "cost": f.cost,
                "errors_by_class": f.errors_by_class,
                "effective_window": f.context_window.effective if f.context_window else None,
                "effective_window_lower_bound": f.context_window.lower_bound
                if f.context_window
                else None,
                "evidence": [e.model_dump() for e in f.evidence],
                "detector": "test-detector",
                "detector_params": {"alpha": 0.05},
            }
        )
        for t in f.tests:
            statistic = t.statistic
            facts.tests.append(
                {
                    **keys,
                    "verdict": f.verdict,
                    "test": t.name,
                    "status": t.status,
                    "statistic": None if statistic is None or math.isnan(statistic) else statistic,
                    "p_value": t.p_value,
                    "effect": t.effect,
                    "honest_low": t.honest_range[0],
                    "honest_high": t.honest_range[1],
                    "n": t.n,
                    "note": t.note,
                }
            )
        for rank, d in enumerate(f.diagnoses):
            facts.diagnoses.append(
                {
                    **keys,
                    "verdict": f.verdict,
                    "rank": rank,
                    "kind": d.kind,
                    "confidence": d.confidence,
                    "summary": d.summary,
                }
            )


JSON_COLUMNS = {
    "samples": ("request_params", "tool_calls", "response_headers"),
    "findings": ("errors_by_class", "evidence", "detector_params"),
}


def comparable(row: dict[str, Any], table: str) -> dict[str, Any]:
    """An exported row with its JSON text columns decoded, to compare with a fact."""
    out = dict(row)
    for column in JSON_COLUMNS.get(table, ()):
        if out.get(column) is not None:
            out[column] = json.loads(out[column])
    return out


def parquet_text(source: Any) -> str:
    """Every value of a Parquet file (a path or its bytes) as text, metadata included: what a
    secret sweep searches (the file's own bytes are compressed)."""
    import io

    import pyarrow.parquet as pq

    if isinstance(source, bytes):
        source = io.BytesIO(source)
    table = pq.read_table(source)
    meta = {
        k.decode(): v.decode("utf-8", "replace") for k, v in (table.schema.metadata or {}).items()
    }
    return json.dumps(
        [meta, table.column_names, table.to_pylist()], default=str, ensure_ascii=False
    )
