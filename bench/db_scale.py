"""Scale of the results database: the README's researcher queries on a month of data.

Fills a fresh database, on SQLite and on PostgreSQL, with 30 days of audit rounds (by default
1,000,000 samples from 20 providers of 4 models plus the 4 reference engines, their scores
and findings), written straight into the schema the migrations build, then times the example
queries of the README's "The results database" section (a per-provider summary over the
last 7 days; one probe's history), taken verbatim from its ```sql blocks: the median of
`--runs` runs, cold (this database's files dropped from the OS page cache with
posix_fadvise, and on PostgreSQL its pages pushed out of shared_buffers, before each run)
and warm (after one untimed run); a new connection per run, the time of the query and of
fetching all its rows. It times them on the schema before this benchmark's indexes (revision
BEFORE), then migrates to head (timing the index builds) and times them again. Writes
bench/results/db_scale.json.

    nice -n 10 .venv/bin/python bench/db_scale.py [--samples 1000000] [--days 30] [--runs 5]
        [--backends sqlite,postgresql] [--pg-url postgresql://postgres@127.0.0.1:5432/postgres]

The data: every hour a `core` round (the real suite from probes/, 53 requests) to every
endpoint, every 6 hours a `demo` (25) and a `tools` (9) round; a few rounds stopped by their
budget so that the total is exactly --samples. Per provider an error rate (0.5-3%, two flaky
ones at 12%, one 8-hour outage), a latency, a price; three providers answer differently and
are found deviant. Answers are ~100 characters, payloads the real request bodies and small
OpenAI-style response bodies. Each answered sample has the 3 scores of the `shape` scorer
(about 2.9M score rows); each round has one finding per provider. Sample ids follow time, as
the auditor writes them. SQLite: executemany in one transaction (journal and sync off), then
WAL mode as the auditor leaves it; no ANALYZE (the auditor never runs it). PostgreSQL: COPY;
autovacuum off on samples and scores, one VACUUM ANALYZE before the last
--pg-unvacuumed-days (3) are loaded and ANALYZE at the end: autovacuum vacuums an
insert-only table after 20% growth, about every 6 days at this rate, and index-only scans
read the heap for pages not vacuumed since. The head schema is timed once more after a
VACUUM.

Needs root (or ownership of PostgreSQL's files) for the cold runs on PostgreSQL, and the
pg_prewarm and pg_buffercache extensions. Takes about 5 minutes for both databases on 2
cores. The SQLite file goes to a temporary directory (--dir) and the PostgreSQL database
(bench_db_scale_PID) is dropped at the end, unless --keep.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

from auditor.probes.suite import expand_requests, load_suites
from auditor.storage.db import head_revision, make_engine, upgrade
from auditor.storage.tables import (
    FindingRow,
    ProbeCaseRow,
    ProviderRow,
    RoundRow,
    SampleRow,
    ScoreRow,
)

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "0004"  # the schema before the indexes this benchmark added (0005)
HISTORY_PROBE = "capital-france"

MODELS = {
    "llama-3.1-8b-instruct": "meta-llama/Llama-3.1-8B-Instruct",
    "qwen2.5-7b-instruct": "Qwen/Qwen2.5-7B-Instruct",
    "gpt-oss-20b": "openai/gpt-oss-20b",
    "mistral-small-24b": "mistralai/Mistral-Small-24B-Instruct-2501",
}
NAMES = (  # noqa: SIM905
    "acme bolt cirrus delta ember flux gale helix ion jolt "
    "krait lumen mesa nova orbit pulse quill rift sable tidal"
).split()
FLAKY = {"delta", "lumen"}
DEVIANT = {"cirrus", "helix", "orbit"}
OUTAGE = "pulse"  # refuses connections for 8 hours, 10 days before the end
SCHEDULE = {"core": (60, 0), "demo": (360, 20), "tools": (360, 40)}  # every, offset (minutes)
SECONDS_PER_REQUEST = 6.0  # a round's requests spread over n * 6 s
ERRORS = (  # class, status, message, share of errors, attempts
    ("rate_limited", 429, "HTTP 429: rate limit exceeded, retry later", 0.35, 3),
    ("server_error", 503, "HTTP 503: upstream unavailable", 0.25, 3),
    ("timeout", None, "no response within 60 s", 0.20, 3),
    ("connect_error", None, "connection refused", 0.10, 1),
    ("protocol_error", 200, "response has no choices", 0.10, 1),
)
WORDS = (  # noqa: SIM905
    "the answer is paris rome tokyo forty two sixty three a short poem about sea waves and "
    "wind under grey sky light falls on quiet water while boats drift home slowly yes no "
    "because first second then finally result value list item json format model reply"
).split()


# Columns that migrations after BEFORE added: not in the schema the data is loaded into (the
# migration to head fills them).
LATER_COLUMNS = {"findings": {"round_started_at"}, "rounds": {"judging"}}  # 0006, 0007


def columns(table: Any) -> list[str]:
    """A table's columns at BEFORE, quoted, in declaration order: the order of the tuples
    below."""
    later = LATER_COLUMNS.get(table.__tablename__, set())
    return [f'"{c.name}"' for c in table.__table__.columns if c.name not in later]


# --- the data -------------------------------------------------------------------------------


@dataclass
class Endpoint:
    id: int
    model: str
    name: str
    kind: str
    error_rate: float
    latency_ms: float
    price: float | None  # $ per token
    served_model: str
    server: str


@dataclass
class Request:
    probe_id: str
    probe_hash: str
    sample_index: int
    max_tokens: int
    prompt_tokens: int
    sampled: bool
    bodies: dict[str, str]  # model -> request JSON as sent
    texts: list[tuple[str, str]]  # (answer, answer as a JSON string)
    logprobs_json: str
    tool_calls_json: str


@dataclass
class Round:
    id: str
    suite: str
    start: float  # epoch seconds
    planned: int
    size: int  # samples stored (planned, or fewer when its budget stopped it)


@dataclass
class Chunk:
    start: float  # when its first round started
    samples: list[tuple[Any, ...]] = field(default_factory=list)
    scores: list[tuple[Any, ...]] = field(default_factory=list)
    findings: list[tuple[Any, ...]] = field(default_factory=list)


def ts(epoch: float, suffix: str) -> str:
    """A timestamp as SQLAlchemy writes it on SQLite; with suffix "+00" for PostgreSQL."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S.%f") + suffix


class Dataset:
    def __init__(self, n_samples: int, days: int, seed: int) -> None:
        self.n_samples, self.days, self.seed = n_samples, days, seed
        rng = random.Random(seed)
        self.end = time.time()
        self.begin = self.end - days * 86400
        suites = load_suites(ROOT / "probes")
        self.suites = {name: suites[name] for name in SCHEDULE}
        self.endpoints: list[Endpoint] = []
        names = iter(NAMES)
        for model, model_id in MODELS.items():
            for _ in range(5):
                name = next(names)
                rate = 0.12 if name in FLAKY else rng.uniform(0.005, 0.03)
                self.endpoints.append(
                    Endpoint(
                        len(self.endpoints) + 1,
                        model,
                        name,
                        "provider",
                        rate,
                        rng.uniform(250, 2500),
                        rng.uniform(0.05, 1.0) / 1e6,
                        model_id,
                        rng.choice(["vllm/0.6.3", "sglang", "nginx", "cloudflare"]),
                    )
                )
            self.endpoints.append(
                Endpoint(
                    len(self.endpoints) + 1,
                    model,
                    "reference",
                    "reference",
                    0.0,
                    900.0,
                    None,
                    model.replace("-instruct", "") + ".Q8_0.gguf",
                    "auditor-reference",
                )
            )
        self.requests = {name: self._requests(suite, rng) for name, suite in self.suites.items()}
        self.rounds = self._schedule(rng)

    def _requests(self, suite: Any, rng: random.Random) -> list[Request]:
        out = []
        for req in expand_requests(suite):
            body = req.model_dump(mode="json", exclude_none=True)
            params = {k: v for k, v in body.get("params", {}).items() if v is not None}
            messages = [{k: v for k, v in m.items() if v is not None} for m in body["messages"]]
            prompt = json.dumps(messages)
            texts = []
            for v in range(12):
                words = random.Random(f"{req.probe_id}/{v}").choices(WORDS, k=18)
                text = " ".join(words).capitalize() + "."
                texts.append((text, json.dumps(text)))
            logprobs = "null"
            if params.get("logprobs"):
                logprobs = json.dumps(
                    [
                        {
                            "token": w,
                            "logprob": round(-rng.random(), 4),
                            "top_logprobs": [{"token": w, "logprob": -0.1}],
                        }
                        for w in texts[0][0].split()[:8]
                    ]
                )
            tool_calls = "null"
            if params.get("tools"):
                tool = params["tools"][0]["function"]["name"]
                tool_calls = json.dumps(
                    [
                        {
                            "id": "call_0",
                            "type": "function",
                            "function": {"name": tool, "arguments": '{"city": "Paris"}'},
                        }
                    ]
                )
            out.append(
                Request(
                    req.probe_id,
                    req.probe_hash,
                    req.sample_index,
                    int(params.get("max_tokens") or 256),
                    max(8, len(prompt) // 4),
                    float(params.get("temperature") or 0) > 0,
                    {
                        model: json.dumps({"model": model_id, "messages": messages, **params})
                        for model, model_id in MODELS.items()
                    },
                    texts,
                    logprobs,
                    tool_calls,
                )
            )
        return out

    def _schedule(self, rng: random.Random) -> list[Round]:
        rounds = []
        per_request = len(self.endpoints)
        for suite, (every, offset) in SCHEDULE.items():
            t = self.begin + offset * 60
            planned = len(self.requests[suite]) * per_request
            while t + planned / per_request * SECONDS_PER_REQUEST < self.end:
                rounds.append(Round(f"{rng.getrandbits(48):012x}", suite, t, planned, planned))
                t += every * 60
        rounds.sort(key=lambda r: r.start)
        excess = sum(r.planned for r in rounds) - self.n_samples
        if excess < 0:
            raise SystemExit(
                f"only {self.n_samples + excess} samples fit in {self.days} days: raise --days"
            )
        for r in rng.sample(rounds, len(rounds)):  # budget stops cut the surplus
            if excess == 0:
                break
            cut = min(excess, r.planned // 2)
            r.size -= cut
            excess -= cut
        if excess:
            raise SystemExit("too few rounds to cut down to --samples: lower --days")
        return rounds

    # rows ---------------------------------------------------------------------------------

    def providers(self, suffix: str) -> list[tuple[Any, ...]]:
        now = ts(self.begin, suffix)
        return [
            (
                e.id,
                e.model,
                e.name,
                e.kind,
                None if e.kind == "reference" else f"https://api.{e.name}.example/v1",
                MODELS[e.model],
                e.kind == "reference",
                json.dumps({"name": e.name, "timeout_s": 60, "headers": ["authorization"]}),
                now,
            )
            for e in self.endpoints
        ]

    def probe_cases(self, suffix: str) -> list[tuple[Any, ...]]:
        rows = []
        for suite in self.suites.values():
            for case in suite.cases:
                rows.append(
                    (
                        case.content_hash,
                        case.id,
                        case.suite,
                        case.group,
                        json.dumps(case.signals),
                        json.dumps(case.model_dump(mode="json")),
                        ts(self.begin, suffix),
                    )
                )
        return rows

    def round_rows(self, suffix: str) -> list[tuple[Any, ...]]:
        models = json.dumps(list(MODELS))
        rows = []
        for r in self.rounds:
            n = r.size // len(self.endpoints) + 1
            rows.append(
                (
                    r.id,
                    r.suite,
                    self.suites[r.suite].hash,
                    "0.4.0",
                    "9f" * 32,
                    ts(r.start, suffix),
                    ts(r.start + n * SECONDS_PER_REQUEST + 5, suffix),
                    "complete",
                    None if r.size == r.planned else "budget: max_requests",
                    r.planned,
                    models,
                    json.dumps({"max_requests": r.size}),
                    "auditor-1",
                    4242,
                )
            )
        return rows

    def chunks(self, suffix: str, per_chunk: int = 24) -> Iterator[Chunk]:
        rng = random.Random(self.seed + 1)
        sid, score_id = 0, 0
        self.finding_ids = itertools.count(1)
        outage = (self.end - 10 * 86400, self.end - 10 * 86400 + 8 * 3600)
        for first in range(0, len(self.rounds), per_chunk):
            chunk = Chunk(self.rounds[first].start)
            for r in self.rounds[first : first + per_chunk]:
                requests = self.requests[r.suite]
                duration = len(requests) * SECONDS_PER_REQUEST
                totals: dict[int, list[Any]] = defaultdict(lambda: [0, 0, 0, 0.0, {}])
                k = 0
                for j, req in enumerate(requests):
                    for e in self.endpoints:
                        if k == r.size:
                            break
                        k += 1
                        sid += 1
                        created = r.start + duration * (j + rng.random()) / len(requests)
                        body = req.bodies[e.model]
                        headers = f'{{"server": "{e.server}", "x-request-id": "{sid:012x}"}}'
                        error = None
                        if e.kind == "provider":
                            if e.name == OUTAGE and outage[0] <= created < outage[1]:
                                error = ERRORS[3]
                            elif rng.random() < e.error_rate:
                                x = rng.random()
                                for error in ERRORS:
                                    x -= error[3]
                                    if x < 0:
                                        break
                        tot = totals[e.id]
                        tot[0] += 1
                        if error is not None:
                            cls, status, message, _, attempts = error
                            latency = 60000.0 if cls == "timeout" else rng.uniform(20, 400)
                            response = "null"
                            if status is not None:
                                response = json.dumps({"error": {"message": message, "type": cls}})
                            tot[1] += 1
                            tot[4][cls] = tot[4].get(cls, 0) + 1
                            chunk.samples.append(
                                (
                                    sid,
                                    r.id,
                                    e.id,
                                    req.probe_hash,
                                    req.probe_id,
                                    req.sample_index,
                                    False,
                                    status,
                                    cls,
                                    message,
                                    None,
                                    None,
                                    None,
                                    None,
                                    None,
                                    None,
                                    latency,
                                    None,
                                    attempts,
                                    False,
                                    None,
                                    body,
                                    response,
                                    "null",
                                    "null",
                                    "null" if status is None else headers,
                                    ts(created - latency / 1000, suffix),
                                    ts(created, suffix),
                                )
                            )
                            continue
                        if e.name in DEVIANT and rng.random() < 0.3:
                            text, text_json = req.texts[8 + rng.randrange(4)]
                        elif req.sampled:
                            text, text_json = req.texts[rng.randrange(8)]
                        else:
                            text, text_json = req.texts[0]
                        completion = min(req.max_tokens, max(1, len(text) // 4))
                        finish = "length" if completion == req.max_tokens else "stop"
                        total = req.prompt_tokens + completion
                        cached = e.kind == "reference" and not req.sampled and rng.random() < 0.85
                        latency = rng.lognormvariate(0, 0.35) * e.latency_ms
                        if cached:
                            latency = rng.uniform(0.5, 3)
                        cost = None if e.price is None else round(total * e.price, 8)
                        tot[2] += total
                        tot[3] += cost or 0.0
                        chunk.samples.append(
                            (
                                sid,
                                r.id,
                                e.id,
                                req.probe_hash,
                                req.probe_id,
                                req.sample_index,
                                True,
                                200,
                                None,
                                None,
                                text,
                                finish,
                                req.prompt_tokens,
                                completion,
                                total,
                                cost,
                                latency,
                                latency * 0.3,
                                1,
                                cached,
                                e.served_model,
                                body,
                                f'{{"id": "chatcmpl-{sid:x}", "object": "chat.completion", '
                                f'"model": "{e.served_model}", "choices": [{{"index": 0, '
                                f'"message": {{"role": "assistant", "content": {text_json}}}, '
                                f'"finish_reason": "{finish}"}}], "usage": {{"prompt_tokens": '
                                f'{req.prompt_tokens}, "completion_tokens": {completion}, '
                                f'"total_tokens": {total}}}}}',
                                req.logprobs_json,
                                req.tool_calls_json,
                                headers,
                                ts(created - latency / 1000, suffix),
                                ts(created, suffix),
                            )
                        )
                        hit = f'{{"finish_reason": "{finish}", "max_tokens": {req.max_tokens}}}'
                        for metric, value, detail in (
                            ("chars", float(len(text)), "{}"),
                            ("completion_tokens", float(completion), "{}"),
                            ("hit_max_tokens", float(finish == "length"), hit),
                        ):
                            score_id += 1
                            chunk.scores.append(
                                (score_id, sid, "shape", "{}", metric, value, None, detail)
                            )
                chunk.findings.extend(self._findings(r, totals, rng, suffix))
            yield chunk

    def _findings(
        self, r: Round, totals: dict[int, list[Any]], rng: random.Random, suffix: str
    ) -> Iterator[tuple[Any, ...]]:
        done = ts(r.start + r.size / len(self.endpoints) * SECONDS_PER_REQUEST + 10, suffix)
        for e in self.endpoints:
            if e.kind != "provider" or e.id not in totals:
                continue
            requests, errors, tokens, cost, by_class = totals[e.id]
            verdict, severity, diagnoses, evidence = "consistent", "info", [], []
            if errors > requests / 2:
                verdict, severity = "unavailable", "critical"
            elif e.name in DEVIANT and rng.random() < 0.8:
                verdict, severity = "deviant", "warning"
                diagnoses = [
                    {
                        "kind": "sampling_params",
                        "confidence": 0.8,
                        "summary": "answers vary where the reference is greedy",
                    }
                ]
                evidence = [
                    {
                        "probe": HISTORY_PROBE,
                        "reference": "Paris.",
                        "provider": "The capital is Paris, of course.",
                        "note": "greedy",
                    }
                ]
            tests = [
                {
                    "name": name,
                    "statistic": round(rng.random(), 4),
                    "p_value": round(rng.random(), 4),
                    "effect": None,
                    "honest_range": [0.0, 0.5],
                    "n": requests,
                    "status": "tested",
                }
                for name in ("greedy_mismatch", "length_shift", "format_failures")
            ]
            yield (
                next(self.finding_ids),
                r.id,
                e.model,
                e.name,
                "reference",
                verdict,
                severity,
                json.dumps(diagnoses),
                json.dumps(tests),
                json.dumps(evidence),
                requests,
                errors,
                tokens,
                round(cost, 6),
                json.dumps(by_class),
                "comparison-v1",
                json.dumps({"alpha": 0.05}),
                done,
            )


# --- loading --------------------------------------------------------------------------------


def _timed_chunks(data: Dataset, suffix: str, clock: dict[str, float]) -> Iterator[Chunk]:
    chunks = data.chunks(suffix)
    while True:
        t = time.perf_counter()
        chunk = next(chunks, None)
        clock["python_s"] += time.perf_counter() - t
        if chunk is None:
            return
        yield chunk


def load_sqlite(path: Path, data: Dataset) -> dict[str, Any]:
    clock = {"python_s": 0.0}
    started = time.perf_counter()
    con = sqlite3.connect(path, isolation_level=None)
    for pragma in (
        "journal_mode=OFF",
        "synchronous=OFF",
        "cache_size=-524288",
        "temp_store=MEMORY",
    ):
        con.execute(f"PRAGMA {pragma}")

    def insert(table: Any, rows: Any) -> None:
        cols = columns(table)
        marks = ", ".join("?" * len(cols))
        con.executemany(
            f"INSERT INTO {table.__tablename__} ({', '.join(cols)}) VALUES ({marks})", rows
        )

    counts = defaultdict(int)
    con.execute("BEGIN")
    insert(ProviderRow, data.providers(""))
    insert(ProbeCaseRow, data.probe_cases(""))
    insert(RoundRow, data.round_rows(""))
    for chunk in _timed_chunks(data, "", clock):
        insert(SampleRow, chunk.samples)
        insert(ScoreRow, chunk.scores)
        insert(FindingRow, chunk.findings)
        counts["samples"] += len(chunk.samples)
        counts["scores"] += len(chunk.scores)
        counts["findings"] += len(chunk.findings)
    con.execute("COMMIT")
    con.execute("PRAGMA journal_mode=WAL")  # as the auditor leaves it
    con.close()
    total = time.perf_counter() - started
    return {
        "total_s": round(total, 1),
        "python_rows_s": round(clock["python_s"], 1),
        "insert_s": round(total - clock["python_s"], 1),
        "rows": dict(counts),
    }


def load_postgres(dsn: str, data: Dataset, unvacuumed_days: float) -> dict[str, Any]:
    """COPY everything; VACUUM when the last `unvacuumed_days` begin, ANALYZE at the end.
    Autovacuum is off for samples and scores meanwhile (and after: the timed state stays)."""
    clock = {"python_s": 0.0}
    started = time.perf_counter()
    counts: dict[str, int] = defaultdict(int)
    vacuum_at = data.end - unvacuumed_days * 86400
    out: dict[str, Any] = {"vacuum_s": None}
    vacuumed = 0

    def vacuum() -> None:
        with psycopg.connect(dsn, autocommit=True) as admin:
            t = time.perf_counter()
            admin.execute("VACUUM (ANALYZE)")
            out["vacuum_s"] = round(time.perf_counter() - t, 1)

    with psycopg.connect(dsn) as con, con.cursor() as cur:

        def insert(table: Any, rows: Any) -> None:
            cols = ", ".join(columns(table))
            with cur.copy(f"COPY {table.__tablename__} ({cols}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)

        for table in ("samples", "scores"):
            cur.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
        insert(ProviderRow, data.providers("+00"))
        insert(ProbeCaseRow, data.probe_cases("+00"))
        insert(RoundRow, data.round_rows("+00"))
        for chunk in _timed_chunks(data, "+00", clock):
            if out["vacuum_s"] is None and chunk.start >= vacuum_at:
                con.commit()
                vacuum()
                vacuumed = counts["samples"]
            insert(SampleRow, chunk.samples)
            insert(ScoreRow, chunk.scores)
            insert(FindingRow, chunk.findings)
            counts["samples"] += len(chunk.samples)
            counts["scores"] += len(chunk.scores)
            counts["findings"] += len(chunk.findings)
        for table in ("providers", "samples", "scores", "findings"):
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}"
            )
    if out["vacuum_s"] is None:
        vacuum()
        vacuumed = counts["samples"]
    with psycopg.connect(dsn, autocommit=True) as con:
        t = time.perf_counter()
        con.execute("ANALYZE")
        analyze = time.perf_counter() - t
    loaded = time.perf_counter() - started
    return {
        "total_s": round(loaded, 1),
        "python_rows_s": round(clock["python_s"], 1),
        "copy_s": round(loaded - clock["python_s"] - out["vacuum_s"] - analyze, 1),
        "vacuum_analyze_s": out["vacuum_s"],
        "analyze_s": round(analyze, 1),
        "samples_not_vacuumed": counts["samples"] - vacuumed,
        "rows": dict(counts),
    }


# --- caches ---------------------------------------------------------------------------------


def drop_from_page_cache(paths: list[Path]) -> None:
    """Write back and drop these files' pages from the OS page cache (this file only, not
    the whole machine's cache: other work runs here)."""
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def cached_mib(paths: list[Path]) -> float:
    """How much of these files the page cache holds (mincore via util-linux fincore)."""
    existing = [str(p) for p in paths if p.exists()]
    if not existing or shutil.which("fincore") is None:
        return float("nan")
    total = 0
    for i in range(0, len(existing), 200):
        out = subprocess.run(
            ["fincore", "--bytes", "--noheadings", "--output", "RES", *existing[i : i + 200]],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        total += sum(int(x) for x in out.split())
    return round(total / 2**20, 1)


# --- timing ---------------------------------------------------------------------------------


def readme_queries() -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sql\n(.*?)```", text, flags=re.S)
    names = {}
    for block in blocks:
        first = block.splitlines()[0]
        if "last 7 days" in first:
            names["provider_summary_7_days"] = block
        elif "One probe's answers" in first:
            names["probe_history"] = block
    assert len(names) == 2, "README example queries not found"
    return names


def for_sqlite(sql: str) -> str:
    """The README's note: on SQLite the window is written with datetime()."""
    return sql.replace("CURRENT_TIMESTAMP - INTERVAL '7 days'", "datetime('now', '-7 days')")


def measure(
    run: Callable[[], tuple[int, float]], evict: Callable[[], dict[str, Any]], runs: int
) -> dict[str, Any]:
    """Median of `runs` cold runs and of `runs` warm runs (after one untimed run). `run`
    opens a connection, then times the query and the fetching of all its rows."""
    cold, notes = [], []
    for _ in range(runs):
        notes.append(evict())
        rows, seconds = run()
        cold.append(seconds * 1000)
    run()
    warm = []
    for _ in range(runs):
        rows, seconds = run()
        warm.append(seconds * 1000)
    return {
        "rows": rows,
        "warm_ms": {
            "median": round(statistics.median(warm), 1),
            "runs": [round(x, 1) for x in warm],
        },
        "cold_ms": {
            "median": round(statistics.median(cold), 1),
            "runs": [round(x, 1) for x in cold],
        },
        "left_cached_before_cold_runs": notes,
    }


def sqlite_phase(path: Path, runs: int, label: str) -> dict[str, Any]:
    files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]

    def evict() -> dict[str, Any]:
        drop_from_page_cache(files)
        return {"os_page_cache_mib": cached_mib(files)}

    out: dict[str, Any] = {"indexes": sqlite_indexes(path), "queries": {}}
    for name, sql in readme_queries().items():
        sql = for_sqlite(sql)

        def run(sql: str = sql) -> tuple[int, float]:
            con = sqlite3.connect(path)
            try:
                t = time.perf_counter()
                n = len(con.execute(sql).fetchall())
                return n, time.perf_counter() - t
            finally:
                con.close()

        result = measure(run, evict, runs)
        con = sqlite3.connect(path)
        result["plan"] = [r[3] for r in con.execute(f"EXPLAIN QUERY PLAN {sql}")]
        con.close()
        out["queries"][name] = result
        print(
            f"  sqlite {label} {name}: warm {result['warm_ms']['median']} ms, "
            f"cold {result['cold_ms']['median']} ms, {result['rows']} rows",
            flush=True,
        )
    return out


def sqlite_indexes(path: Path) -> list[str]:
    con = sqlite3.connect(path)
    rows = con.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'samples' "
        "AND sql IS NOT NULL ORDER BY name"
    ).fetchall()
    con.close()
    return [r[0] for r in rows]


class Postgres:
    """A throwaway database on the server, and a way to make its caches cold."""

    def __init__(self, admin_dsn: str, name: str) -> None:
        self.admin_dsn, self.name = admin_dsn, name
        self.dsn = str(make_url(admin_dsn).set(database=name)).replace("+psycopg", "")
        with psycopg.connect(admin_dsn, autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{name}"')
            con.execute(f'CREATE DATABASE "{name}"')
            self.data_dir = Path(con.execute("SHOW data_directory").fetchone()[0])
            self.oid = con.execute(
                "SELECT oid FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()[0]
            self.shared_buffers = con.execute(
                "SELECT setting::bigint * 8192 FROM pg_settings WHERE name = 'shared_buffers'"
            ).fetchone()[0]

    def url(self) -> str:
        return self.dsn.replace("postgresql://", "postgresql+psycopg://", 1)

    def files(self) -> list[Path]:
        return sorted((self.data_dir / "base" / str(self.oid)).glob("*"))

    def size(self) -> dict[str, Any]:
        with psycopg.connect(self.dsn) as con:
            db = con.execute(
                "SELECT pg_database_size(current_database()) - coalesce(("
                "SELECT pg_total_relation_size(oid) FROM pg_class WHERE relname = 'bench_churn'"
                "), 0)"
            ).fetchone()[0]
            tables = con.execute(
                "SELECT relname, pg_table_size(oid), pg_indexes_size(oid) FROM pg_class "
                "WHERE relname IN ('samples', 'scores', 'findings', 'rounds') ORDER BY 1"
            ).fetchall()
        return {
            "database_mib": round(db / 2**20, 1),
            "tables_mib": {
                t: {"table": round(s / 2**20, 1), "indexes": round(i / 2**20, 1)}
                for t, s, i in tables
            },
        }

    def prepare_cold(self) -> None:
        """A table of 3 x shared_buffers: pg_prewarm'ing it into shared_buffers pushes the
        benchmark's pages out (the server is shared: it is not restarted)."""
        rows = int(3 * self.shared_buffers / 250)
        with psycopg.connect(self.dsn, autocommit=True) as con:
            con.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
            con.execute("CREATE EXTENSION IF NOT EXISTS pg_buffercache")
            con.execute(
                "CREATE TABLE IF NOT EXISTS bench_churn AS "
                f"SELECT g AS id, repeat('x', 200) AS pad FROM generate_series(1, {rows}) g"
            )

    def evict(self) -> dict[str, Any]:
        with psycopg.connect(self.dsn, autocommit=True) as con:
            con.execute("SELECT pg_prewarm('bench_churn', 'buffer')")
            con.execute("CHECKPOINT")
            left = con.execute(
                "SELECT count(*) FROM pg_buffercache WHERE reldatabase = %s "
                "AND relfilenode <> pg_relation_filenode('bench_churn')",
                (self.oid,),
            ).fetchone()[0]
        files = self.files()
        drop_from_page_cache(files)
        return {
            "shared_buffers_mib": round(left * 8192 / 2**20, 1),
            "os_page_cache_mib": cached_mib(files),
        }

    def drop(self) -> None:
        with psycopg.connect(self.admin_dsn, autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def postgres_phase(pg: Postgres, runs: int, label: str) -> dict[str, Any]:
    with psycopg.connect(pg.dsn) as con:
        indexes = [
            r[0]
            for r in con.execute(
                "SELECT indexdef FROM pg_indexes WHERE tablename = 'samples' ORDER BY indexname"
            )
        ]
    out: dict[str, Any] = {"indexes": indexes, "queries": {}}
    for name, sql in readme_queries().items():

        def run(sql: str = sql) -> tuple[int, float]:
            with psycopg.connect(pg.dsn) as con:
                t = time.perf_counter()
                n = len(con.execute(sql).fetchall())
                return n, time.perf_counter() - t

        result = measure(run, pg.evict, runs)
        with psycopg.connect(pg.dsn) as con:
            result["plan"] = [
                r[0] for r in con.execute(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}")
            ]
        out["queries"][name] = result
        print(
            f"  postgresql {label} {name}: warm {result['warm_ms']['median']} ms, "
            f"cold {result['cold_ms']['median']} ms, {result['rows']} rows",
            flush=True,
        )
    return out


# --- the benchmark --------------------------------------------------------------------------


def bench_sqlite(data: Dataset, directory: Path, runs: int, keep: bool) -> dict[str, Any]:
    path = directory / "db_scale.db"
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        p.unlink(missing_ok=True)
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine, BEFORE)
    engine.dispose()
    print(f"sqlite: loading {path}", flush=True)
    out: dict[str, Any] = {"version": sqlite3.sqlite_version, "load": load_sqlite(path, data)}
    out["file_mib"] = {BEFORE: round(path.stat().st_size / 2**20, 1)}
    print(f"  loaded: {out['load']}, {out['file_mib'][BEFORE]} MiB", flush=True)
    out["phases"] = {BEFORE: sqlite_phase(path, runs, BEFORE)}
    head = head_revision()
    if head != BEFORE:
        engine = make_engine(f"sqlite:///{path}")
        t = time.perf_counter()
        upgrade(engine)
        engine.dispose()
        with sqlite3.connect(path) as con:
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        out["migration_to_head_s"] = round(time.perf_counter() - t, 1)
        out["file_mib"][head] = round(path.stat().st_size / 2**20, 1)
        out["phases"][head] = sqlite_phase(path, runs, head)
    if not keep:
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}.migrate.lock")):
            p.unlink(missing_ok=True)
    return out


def bench_postgres(
    data: Dataset, admin_dsn: str, runs: int, unvacuumed_days: float, keep: bool
) -> dict[str, Any]:
    pg = Postgres(admin_dsn, f"bench_db_scale_{os.getpid()}")
    try:
        engine = make_engine(pg.url())
        upgrade(engine, BEFORE)
        engine.dispose()
        print(f"postgresql: loading database {pg.name}", flush=True)
        with psycopg.connect(pg.dsn) as con:
            version = con.execute("SHOW server_version").fetchone()[0]
        load = load_postgres(pg.dsn, data, unvacuumed_days)
        out: dict[str, Any] = {"version": version, "load": load}
        out["size"] = {BEFORE: pg.size()}
        print(f"  loaded: {out['load']}, {out['size'][BEFORE]}", flush=True)
        pg.prepare_cold()
        out["phases"] = {BEFORE: postgres_phase(pg, runs, BEFORE)}
        head = head_revision()
        if head != BEFORE:
            engine = make_engine(pg.url())
            t = time.perf_counter()
            upgrade(engine)
            engine.dispose()
            out["migration_to_head_s"] = round(time.perf_counter() - t, 1)
            out["size"][head] = pg.size()
            out["phases"][head] = postgres_phase(pg, runs, head)
        with psycopg.connect(pg.dsn, autocommit=True) as con:
            con.execute("VACUUM samples")
        label = f"{head}, after VACUUM"
        out["phases"][label] = postgres_phase(pg, runs, label)
        return out
    finally:
        if not keep:
            pg.drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument(
        "--pg-unvacuumed-days",
        type=float,
        default=3,
        help="the last days loaded after the VACUUM (autovacuum's lag on an insert-only table)",
    )
    parser.add_argument("--dir", type=Path, default=None, help="where the SQLite file goes")
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "db_scale.json")
    args = parser.parse_args()

    t = time.perf_counter()
    data = Dataset(args.samples, args.days, args.seed)
    result: dict[str, Any] = {
        "benchmark": "db_scale",
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "command": "nice -n 10 .venv/bin/python bench/db_scale.py",
        "schema_before": BEFORE,
        "schema_after": head_revision(),
        "data": {
            "samples": args.samples,
            "days": args.days,
            "providers": sum(e.kind == "provider" for e in data.endpoints),
            "reference_endpoints": sum(e.kind == "reference" for e in data.endpoints),
            "models": len(MODELS),
            "rounds": len(data.rounds),
            "rounds_by_suite": {s: sum(r.suite == s for r in data.rounds) for s in SCHEDULE},
            "rounds_stopped_by_budget": sum(r.size < r.planned for r in data.rounds),
            "probe_cases": sum(len(s.cases) for s in data.suites.values()),
            "history_probe": HISTORY_PROBE,
            "scores_per_answered_sample": 3,
        },
        "timing": f"median of {args.runs} runs; warm after one untimed run; cold: the "
        "database's files dropped from the OS page cache (posix_fadvise DONTNEED) and, on "
        "PostgreSQL, shared_buffers filled with another table (pg_prewarm), before each run; "
        "a new connection per run, all rows fetched",
        "setup_s": round(time.perf_counter() - t, 1),
    }
    backends = args.backends.split(",")
    if "sqlite" in backends:
        directory = args.dir or Path(tempfile.mkdtemp(prefix="db_scale_"))
        directory.mkdir(parents=True, exist_ok=True)
        try:
            result["sqlite"] = bench_sqlite(data, directory, args.runs, args.keep)
        finally:
            if args.dir is None and not args.keep:
                shutil.rmtree(directory, ignore_errors=True)
    if "postgresql" in backends:
        result["postgresql"] = bench_postgres(
            data, args.pg_url, args.runs, args.pg_unvacuumed_days, args.keep
        )
    result["wall_s"] = round(time.perf_counter() - t, 1)
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out} ({result['wall_s']} s)")


if __name__ == "__main__":
    main()
