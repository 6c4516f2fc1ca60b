"""A results database seeded through the real Store with known facts: rounds (one still
running), providers with secrets in their configuration, probe cases, samples (some failed),
findings and incidents. `seed()` records what it wrote, so that the dashboard's query and API
tests compute their expectations from that record in plain Python, never from the code under
test."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from auditor.alerts.incidents import update_from_findings
from auditor.config import ProviderConfig
from auditor.records import (
    CompletionRequest,
    CompletionResponse,
    Diagnosis,
    ErrorClass,
    Evidence,
    Finding,
    Message,
    ProbeCase,
    TestResult,
    Usage,
)
from auditor.storage.repository import Store
from auditor.storage.tables import FindingRow, IncidentRow, RoundRow
from helpers.db import new_store, postgres_database

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SECRET_HEADER_VALUE = "hdr-secret-value-8c1f"
KEY_ENV = "ACME_SECRET_KEY_ENV"
HEADER_NAME = "X-Custom-Auth"
URL_PASSWORD = "url-password-5d2e"
URL_QUERY_KEY = "qs-secret-77ab"

# The assessed rounds, oldest first, with ids whose order is not their time order.
ROUND_IDS = ["r-e", "r-b", "r-d", "r-a", "r-c"]
RUNNING = "r-0"  # started with the last assessed round (a tie in time), no findings yet
# Verdict of each provider in each assessed round (None: not assessed that round).
VERDICTS: dict[tuple[str, str], list[str | None]] = {
    ("m1", "acme"): ["consistent", "consistent", "deviant", "deviant", "deviant"],
    ("m1", "bolt"): ["deviant", "consistent", "consistent", "consistent", "consistent"],
    ("m1", "kite"): ["inconclusive", None, "inconclusive", "inconclusive", "inconclusive"],
    ("m2", "acme"): ["deviant", "consistent", "deviant", "consistent", "unavailable"],
}
UNASSESSED = ("m2", "zeta")  # configured, samples stored, never assessed
PROBES = ("p-a", "p-b")
SAMPLES_PER_PROBE = 2
ERROR_CYCLE = (ErrorClass.TIMEOUT, ErrorClass.RATE_LIMITED, ErrorClass.CONNECT_ERROR)


@dataclass(frozen=True)
class SampleFact:
    id: int
    round_id: str
    model: str
    provider: str
    probe_id: str
    ok: bool
    error_class: str | None
    latency_ms: float | None
    tokens: int | None
    cost: float | None


@dataclass
class Seeded:
    store: Store
    url: str
    starts: dict[str, datetime]  # round id -> started_at
    providers: dict[tuple[str, str], int]  # (model, name) -> id, references included
    findings: dict[tuple[str, str, str], int] = field(default_factory=dict)  # round, model, name
    samples: list[SampleFact] = field(default_factory=list)

    def rounds_newest_first(self) -> list[str]:
        return sorted(self.starts, key=lambda r: (self.starts[r], r), reverse=True)


def _tests(i: int, provider: str, nan: bool) -> list[TestResult]:
    return [
        TestResult(
            name="rate:expect_pass",
            statistic=float("nan") if nan else 0.1 * i,
            p_value=0.5 / (i + 1),
            effect=-0.05 * i,
            honest_range=(-0.2, 0.2 + i / 100),
            n=10 + i,
        ),
        TestResult(
            name="greedy:exact_match",
            statistic=1.0 - i / 10,
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
            note=f"no tokenizer for {provider}",
        ),
    ]


def _finding(
    model: str, provider: str, verdict: str, i: int, facts: list[SampleFact], nan: bool
) -> Finding:
    deviant = verdict == "deviant"
    errors = [f for f in facts if not f.ok]
    return Finding(
        model=model,
        provider=provider,
        baseline="reference",
        verdict=verdict,  # type: ignore[arg-type]
        severity="critical" if deviant else ("warning" if verdict == "unavailable" else "info"),
        diagnoses=[Diagnosis(kind="quantization", confidence=0.8, summary="weights moved")]
        if deviant
        else [],
        tests=_tests(i, provider, nan),
        evidence=[Evidence(probe="p-a", reference="Paris", provider="Lyon", note="differs")]
        if deviant
        else [],
        requests=len(facts),
        errors=len(errors),
        tokens=sum(f.tokens or 0 for f in facts),
        cost=round(sum(f.cost or 0.0 for f in facts), 6),
        errors_by_class={
            c: sum(f.error_class == c for f in errors) for c in {f.error_class for f in errors}
        },
    )


def _public_config(model: str, name: str) -> tuple[str, dict[str, Any]]:
    """What `auditor run` stores for a provider: its public view (api_key_env, header names)."""
    base_url = "http://127.0.0.1:9/v1"
    if name == "kite":
        base_url = f"http://user:{URL_PASSWORD}@127.0.0.1:9/v1?key={URL_QUERY_KEY}"
    config = ProviderConfig(
        name=name,
        base_url=base_url,
        model=f"{model}-at-{name}",
        api_key_env=KEY_ENV,
        headers={HEADER_NAME: SECRET_HEADER_VALUE},
        trusted=name == "bolt",
    )
    return base_url, config.public_view()


def seed(url: str, *, nan: bool = False) -> Seeded:
    """Rounds, providers (with secrets in their configuration), probe cases, samples, findings
    and incidents, written as the auditor writes them."""
    store = new_store(url)
    endpoints = [*VERDICTS, UNASSESSED, ("m1", "reference"), ("m2", "reference")]
    providers = {}
    for model, name in endpoints:
        if name == "reference":
            providers[(model, name)] = store.upsert_provider(
                model,
                name,
                kind="reference",
                base_url=None,
                model_id="gguf",
                trusted=True,
                config={"engine": "llama_cpp"},
            )
            continue
        base_url, config = _public_config(model, name)
        providers[(model, name)] = store.upsert_provider(
            model,
            name,
            base_url=base_url,
            model_id=config["model"],
            trusted=config["trusted"],
            config=config,
        )
    cases = [
        ProbeCase(id=p, suite="core", messages=[Message(role="user", content=f"say {p}")])
        for p in PROBES
    ]
    store.upsert_probe_cases(cases)

    starts = {rid: T0 + timedelta(hours=i) for i, rid in enumerate(ROUND_IDS)}
    starts[RUNNING] = starts[ROUND_IDS[-1]]
    seeded = Seeded(store=store, url=url, starts=starts, providers=providers)
    for rid in [*ROUND_IDS, RUNNING]:
        store.start_round(RoundRow(id=rid, suite="core", suite_hash="h", auditor_version="t"))
        with store.session() as s:
            s.execute(update(RoundRow).where(RoundRow.id == rid).values(started_at=starts[rid]))
            s.commit()

    for r, rid in enumerate([*ROUND_IDS, RUNNING]):
        for e, (model, name) in enumerate(endpoints):
            for case in cases:
                for k in range(SAMPLES_PER_PROBE):
                    seeded.samples.append(
                        add_sample(store, rid, providers[(model, name)], model, name, case, k, r, e)
                    )
        if rid == RUNNING:
            continue
        store.finish_round(rid, "complete", None)
        found = [
            _finding(model, name, verdicts[r], r, facts_of(seeded, rid, model, name), nan)
            for (model, name), verdicts in VERDICTS.items()
            if verdicts[r] is not None
        ]
        store.save_findings(rid, found, "test-detector", {"alpha": 0.05})
        update_from_findings(store, rid, found, now=starts[rid] + timedelta(minutes=30))
    # Recomputing the oldest round writes newer rows: they must not count as the latest.
    store.save_findings(rid := ROUND_IDS[0], store.findings(rid), "test-detector", {})
    with store.session() as s:
        for row in s.execute(select(FindingRow)).scalars():
            assert row.id is not None
            seeded.findings[(row.round_id, row.model, row.provider)] = row.id
        s.add(
            IncidentRow(
                model="suite:deep",
                provider="auditor",
                kind="stale_rounds",
                state="open",
                verdict="stale",
                severity="critical",
                summary="no round",
                opened_at=T0,
                updated_at=T0,
            )
        )
        s.commit()
    return seeded


def add_sample(
    store: Store,
    rid: str,
    provider_id: int,
    model: str,
    name: str,
    case: ProbeCase,
    k: int,
    r: int,
    e: int,
) -> SampleFact:
    n = r * 7 + e * 3 + PROBES.index(case.id) * 2 + k
    failed = n % 5 == 0
    error = ERROR_CYCLE[n % len(ERROR_CYCLE)] if failed else None
    latency_s = None if error is ErrorClass.CONNECT_ERROR else (100 + 13 * r + 7 * e + k) / 1000
    tokens = None if failed else 20 + n % 9
    response = CompletionResponse(
        ok=not failed,
        status_code=None if failed else 200,
        error_class=error,
        error_message=f"{error.value} after retries" if error else None,
        text=None if failed else f"{name} answers {case.id} #{k} in {rid}",
        finish_reason=None if failed else "stop",
        usage=Usage(prompt_tokens=10, completion_tokens=tokens - 10, total_tokens=tokens)
        if tokens
        else Usage(),
        raw_request={"model": model, "messages": [{"role": "user", "content": case.id}]},
        raw_response=None if failed else {"choices": [{"message": {"content": "x"}}]},
        latency_s=latency_s,
    )
    cost = None if failed else tokens * 1e-6
    request = CompletionRequest.from_case(case, k)
    sample_id = store.add_sample(rid, provider_id, request, response, [], cost)
    assert sample_id is not None
    return SampleFact(
        id=sample_id,
        round_id=rid,
        model=model,
        provider=name,
        probe_id=case.id,
        ok=not failed,
        error_class=error.value if error else None,
        latency_ms=None if latency_s is None else latency_s * 1000,
        tokens=tokens,
        cost=cost,
    )


def facts_of(seeded: Seeded, rid: str, model: str, name: str) -> list[SampleFact]:
    return [f for f in seeded.samples if (f.round_id, f.model, f.provider) == (rid, model, name)]


@contextmanager
def seeded_database(backend: str, directory: Path, *, nan: bool = False) -> Iterator[Seeded]:
    """A seeded database on `backend` (sqlite: a file in `directory`; postgres: a new
    database on the loopback server, dropped afterwards), for fixtures wider than a test."""
    if backend == "sqlite":
        data = seed(f"sqlite:///{directory / 'auditor.db'}", nan=nan)
        yield data
        data.store.engine.dispose()
        return
    with postgres_database() as url:
        data = seed(url, nan=nan)
        yield data
        data.store.engine.dispose()


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
