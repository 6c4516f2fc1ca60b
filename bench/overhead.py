"""Orchestration overhead: the full round path (`run_round_async`: limits and retries armed,
every sample scored and committed by the single writer process as it arrives, findings at
the end)
against a bare `httpx.AsyncClient` loop sending the same request bodies with the same
concurrency and storing nothing, in the same process, interleaved, against the stub
provider (`bench/stub.py`, its own process). For SQLite and PostgreSQL, with the stub
answering instantly and after 20 ms. Every round's samples are counted in the database
afterwards (durable). Writes bench/results/overhead.json.

    nice -n 10 .venv/bin/python bench/overhead.py [--requests 2000] [--concurrency 16] [--reps 3]
    nice -n 10 .venv/bin/python bench/overhead.py --profile sqlite:0   # cProfile one round

CPU time is this process's and its children's that ended (each round's writer process).

The helpers here (a suite of N requests, a config against the stub, a timed round) are
shared with bench/rate_limit.py and bench/memory.py.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import platform
import pstats
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import yaml
from sqlalchemy import func, select

from auditor import logs
from auditor.config import AuditorConfig
from auditor.probes import expand_requests, load_suite
from auditor.providers.openai_compatible import OpenAICompatibleAdapter
from auditor.rounds.run import run_round_async
from auditor.rounds.run import select as select_round
from auditor.storage.db import ensure_schema, make_engine
from auditor.storage.repository import Store
from auditor.storage.tables import RoundRow, SampleRow
from auditor.storage.writer import PROFILE_ENV

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stub import running_stub

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
MODEL = "stub-model"
SUITE = "bench"
MAX_SAMPLES = 1000  # a case's `samples` cap


# --- shared helpers -----------------------------------------------------------------------


def quiet_logs() -> None:
    """Logging as `auditor run` sets it up: warnings and up (AUDITOR_LOG_LEVEL)."""
    logs.configure(level=os.environ.get("AUDITOR_LOG_LEVEL", "warning"))


def machine() -> dict[str, Any]:
    """What a result was measured on, for every benchmark's JSON."""
    model = ""
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo", encoding="utf-8") as f:
        memory = f.readline().split(":", 1)[1].strip()
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "memory": memory,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def write_suite(probes_dir: Path, requests: int, max_tokens: int = 16) -> None:
    """A suite of `requests` requests: cases of up to 1000 samples each, short prompts."""
    cases = []
    left, i = requests, 0
    while left > 0:
        n = min(left, MAX_SAMPLES)
        cases.append(
            {
                "id": f"case-{i}",
                "prompt": f"What is the capital of France? Case {i}, answer in one word.",
                "samples": n,
            }
        )
        left -= n
        i += 1
    suite = {
        "suite": SUITE,
        "description": "Benchmark suite against the stub provider.",
        "defaults": {"params": {"temperature": 0, "max_tokens": max_tokens}},
        "cases": cases,
    }
    probes_dir.mkdir(parents=True, exist_ok=True)
    (probes_dir / f"{SUITE}.yaml").write_text(yaml.safe_dump(suite, sort_keys=False))


def config_for(
    database: str,
    probes_dir: Path,
    base_url: str,
    *,
    concurrency: int,
    rps: float = 1_000_000.0,
    burst: int | None = None,
    tpm: int | None = 1_000_000_000,
) -> AuditorConfig:
    """One provider at the stub. The defaults arm every limit (rate, tokens, concurrency)
    without letting the rate or token limit bind; retries keep their defaults (4 attempts)."""
    provider = {
        "name": "stub",
        "base_url": base_url,
        "model": MODEL,
        "requests_per_second": rps,
        "burst": burst if burst is not None else concurrency,
        "tokens_per_minute": tpm,
        "max_concurrency": concurrency,
        "timeout_s": 60,
    }
    return AuditorConfig.model_validate(
        {
            "database": database,
            "suites": [SUITE],
            "probes_dir": str(probes_dir),
            "models": [{"name": MODEL, "reference": None, "providers": [provider]}],
        }
    )


class TimedStore(Store):
    """A Store noting when the runner starts and finishes (around the send-and-store phase),
    and the process's peak RSS at the finish (before findings are computed)."""

    started: float | None = None
    finished: float | None = None
    hwm_kib_at_finish: int | None = None

    def start_round(self, row: RoundRow) -> RoundRow:
        out = super().start_round(row)
        self.started = time.perf_counter()
        return out

    def finish_round(self, round_id: str, status: str, stop_reason: str | None) -> None:
        self.finished = time.perf_counter()
        self.hwm_kib_at_finish = proc_status_kib("VmHWM")
        super().finish_round(round_id, status, stop_reason)


def proc_status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


@contextmanager
def fresh_database(kind: str, workdir: Path) -> Iterator[str]:
    """A new empty database: a SQLite file in `workdir`, or a PostgreSQL database dropped
    afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir / f'bench-{uuid.uuid4().hex[:8]}.db'}"
        return
    name = f"auditor_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def open_store(database: str) -> TimedStore:
    engine = make_engine(database)
    ensure_schema(engine)
    return TimedStore(engine)


def stored_counts(store: Store, round_id: str) -> dict[str, int]:
    with store.session() as s:
        total = s.execute(
            select(func.count(SampleRow.id)).where(SampleRow.round_id == round_id)
        ).scalar_one()
        ok = s.execute(
            select(func.count(SampleRow.id)).where(
                SampleRow.round_id == round_id,
                SampleRow.ok.is_(True),  # type: ignore[attr-defined]
            )
        ).scalar_one()
    return {"samples": int(total), "ok": int(ok)}


async def audited_round(
    config: AuditorConfig, store: TimedStore, stop: asyncio.Event | None = None
) -> dict[str, Any]:
    """One real round; wall time of the whole call and of the send-and-store phase."""
    suite = load_suite(SUITE, Path(config.probes_dir))
    selection = select_round(config, suite, None, None)
    t0 = time.perf_counter()
    result = await run_round_async(
        config, store, selection, with_reference=False, score_likelihood=False, stop=stop
    )
    t1 = time.perf_counter()
    assert store.started is not None and store.finished is not None
    return {
        "round_id": result.round_id,
        "status": result.outcome.status,
        "sent": result.outcome.sent,
        "stored_by_runner": result.outcome.stored,
        "errors": sum(result.outcome.errors_by_endpoint.values()),
        "wall_s": t1 - t0,
        "send_phase_s": store.finished - store.started,
        "findings_s": t1 - store.finished,
        **stored_counts(store, result.round_id),
    }


def request_bodies(config: AuditorConfig) -> list[dict[str, Any]]:
    """The JSON bodies the round sends, built by the provider's own adapter."""
    suite = load_suite(SUITE, Path(config.probes_dir))
    provider = config.models[0].providers[0]
    adapter = OpenAICompatibleAdapter(provider)
    bodies = [adapter.request_body(r) for r in expand_requests(suite)]
    asyncio.run(adapter.aclose())
    return bodies


async def bare_loop(base_url: str, bodies: list[dict[str, Any]], concurrency: int) -> float:
    """The same bodies through one httpx.AsyncClient with `concurrency` workers; the answers
    are read and parsed, nothing is stored. Returns the wall time."""
    pending = iter(bodies)
    answered = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal answered
        for body in pending:
            response = await client.post("/chat/completions", json=body)
            response.raise_for_status()
            response.json()
            answered += 1

    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    assert answered == len(bodies)
    return elapsed


async def raw_client(port: int, body: bytes, requests: int, concurrency: int) -> float:
    """The stub's own ceiling: `concurrency` keep-alive connections writing raw HTTP/1.1
    requests and reading the answers with no HTTP library (about 30 us a request here, so
    the stub is what limits it). Returns the wall time."""
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode()
    message = head + body
    left = requests

    async def connection() -> None:
        nonlocal left
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while left > 0:
            left -= 1
            writer.write(message)
            headers = await reader.readuntil(b"\r\n\r\n")
            length = int(headers.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
        writer.close()
        await writer.wait_closed()

    t0 = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return time.perf_counter() - t0


def stub_ceiling(requests: int, concurrency: int, workdir: Path) -> dict[str, Any]:
    """The instant stub under a raw client, and under the bare httpx loop: its rate and the
    share of a core it used (below 1: it was not the bottleneck)."""
    probes = workdir / "probes-ceiling"
    write_suite(probes, requests)
    config = config_for("sqlite://", probes, "http://127.0.0.1:1/v1", concurrency=concurrency)
    bodies = request_bodies(config)
    body = json.dumps(bodies[0]).encode()
    out: dict[str, Any] = {"requests": requests, "concurrency": concurrency}
    with running_stub() as stub:
        pid = stub.process.pid
        asyncio.run(raw_client(stub.port, body, 500, concurrency))  # warm-up
        raw_requests = max(20_000, requests)
        wall, times = timed(
            pid, lambda: asyncio.run(raw_client(stub.port, body, raw_requests, concurrency))
        )
        out["raw_client"] = {
            "requests": raw_requests,
            "rps": raw_requests / wall,
            "stub_cpu_share": times["stub_cpu_s"] / times["wall_s"],
            **times,
        }
        _, times = timed(pid, lambda: asyncio.run(bare_loop(stub.base_url, bodies, concurrency)))
        out["bare_httpx_loop"] = {
            "rps": requests / times["wall_s"],
            "stub_cpu_share": times["stub_cpu_s"] / times["wall_s"],
            "client_cpu_share": times["cpu_s"] / times["wall_s"],
            **times,
        }
    return out


# --- the benchmark --------------------------------------------------------------------------


def cpu_s(pid: int | None = None) -> float:
    """User + system CPU seconds of this process (every thread) and of its children waited
    for (the rounds' writer processes: each is waited for at the end of its round, inside
    the timed span; the stub is waited for only when it stops), or of process `pid`."""
    if pid is None:
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    """User + system CPU seconds of this process alone (the event loop's, in a round)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(stub_pid: int, fn: Any) -> tuple[Any, dict[str, float]]:
    """Run `fn()`; its wall time, the CPU time of this process with its children's (the
    writer process), of this process alone, and of the stub."""
    c0, o0, s0, t0 = cpu_s(), own_cpu_s(), cpu_s(stub_pid), time.perf_counter()
    out = fn()
    wall = time.perf_counter() - t0
    return out, {
        "wall_s": wall,
        "cpu_s": cpu_s() - c0,
        "own_cpu_s": own_cpu_s() - o0,
        "stub_cpu_s": cpu_s(stub_pid) - s0,
    }


def measure(
    db: str, latency_ms: float, requests: int, concurrency: int, reps: int, workdir: Path
) -> dict[str, Any]:
    probes = workdir / f"probes-{requests}"
    write_suite(probes, requests)
    with running_stub(latency_ms=latency_ms) as stub:
        pid = stub.process.pid
        # Warm-up (imports, first connections, schema code paths), not counted.
        warm = workdir / "probes-warm"
        write_suite(warm, 200)
        with fresh_database(db, workdir) as url:
            config = config_for(url, warm, stub.base_url, concurrency=concurrency)
            asyncio.run(audited_round(config, open_store(url)))
            asyncio.run(bare_loop(stub.base_url, request_bodies(config), concurrency))
        bare: list[dict[str, float]] = []
        rounds: list[dict[str, Any]] = []
        for rep in range(reps):
            with fresh_database(db, workdir) as url:
                config = config_for(url, probes, stub.base_url, concurrency=concurrency)
                bodies = request_bodies(config)
                store = open_store(url)
                order = ("bare", "round") if rep % 2 == 0 else ("round", "bare")
                for what in order:
                    stub.reset()
                    if what == "bare":
                        _, times = timed(
                            pid,
                            lambda b=bodies: asyncio.run(bare_loop(stub.base_url, b, concurrency)),
                        )
                        bare.append(times)
                    else:
                        run, times = timed(
                            pid, lambda c=config, s=store: asyncio.run(audited_round(c, s))
                        )
                        run.update(
                            cpu_s=times["cpu_s"],
                            own_cpu_s=times["own_cpu_s"],
                            stub_cpu_s=times["stub_cpu_s"],
                        )
                        run["stub_arrivals"] = stub.stats()["count"]
                        rounds.append(run)
                store.engine.dispose()
    bare_rates = [requests / b["wall_s"] for b in bare]
    round_rates = [requests / r["wall_s"] for r in rounds]
    send_rates = [requests / r["send_phase_s"] for r in rounds]
    durable = all(r["samples"] == r["sent"] == requests and r["ok"] == requests for r in rounds)
    median_bare = statistics.median(bare_rates)
    median_round = statistics.median(round_rates)
    bare_cpu_ms = statistics.median(b["cpu_s"] for b in bare) / requests * 1000
    round_cpu_ms = statistics.median(r["cpu_s"] for r in rounds) / requests * 1000
    round_own_cpu_ms = statistics.median(r["own_cpu_s"] for r in rounds) / requests * 1000
    return {
        "database": db,
        "stub_latency_ms": latency_ms,
        "requests": requests,
        "concurrency": concurrency,
        "bare_loop_rps": bare_rates,
        "round_rps": round_rates,
        "round_send_phase_rps": send_rates,
        "median_bare_rps": median_bare,
        "median_round_rps": median_round,
        "median_round_send_phase_rps": statistics.median(send_rates),
        "ratio": median_round / median_bare,
        "ratio_send_phase": statistics.median(send_rates) / median_bare,
        "pair_ratios": [r / b for r, b in zip(round_rates, bare_rates, strict=True)],
        "bare_cpu_ms_per_request": bare_cpu_ms,
        "round_cpu_ms_per_request": round_cpu_ms,
        "round_event_loop_process_cpu_ms_per_request": round_own_cpu_ms,
        "cpu_ratio": bare_cpu_ms / round_cpu_ms,
        "every_sample_durable": durable,
        "rounds": rounds,
        "bare": bare,
    }


def profile(spec: str, requests: int, concurrency: int, workdir: Path) -> None:
    """cProfile of one round (db:latency_ms): the event loop (this process), the writer
    (its child process, profiled there through AUDITOR_WRITER_PROFILE) and the bare loop;
    top functions by own and cumulative time."""
    db, latency = spec.split(":")
    probes = workdir / "probes-profile"
    write_suite(probes, requests)
    writer_stats = workdir / "writer.prof"
    with running_stub(latency_ms=float(latency)) as stub, fresh_database(db, workdir) as url:
        config = config_for(url, probes, stub.base_url, concurrency=concurrency)
        store = open_store(url)
        os.environ[PROFILE_ENV] = str(writer_stats)
        profiler = cProfile.Profile()
        profiler.enable()
        run = asyncio.run(audited_round(config, store))
        profiler.disable()
        del os.environ[PROFILE_ENV]
        bodies = request_bodies(config)
        bare_profiler = cProfile.Profile()
        bare_profiler.enable()
        bare_s = asyncio.run(bare_loop(stub.base_url, bodies, concurrency))
        bare_profiler.disable()
        store.engine.dispose()
    print(json.dumps({k: v for k, v in run.items() if k != "round_id"}, indent=1))
    writer = pstats.Stats(str(writer_stats))
    print(
        f"writer process: {writer.total_tt:.2f} s profiled for {requests} samples "
        f"({writer.total_tt / requests * 1000:.2f} ms each); bare loop {bare_s:.2f} s"
    )
    for title, stats in (
        ("EVENT LOOP", pstats.Stats(profiler)),
        ("WRITER PROCESS", writer),
        ("BARE LOOP", pstats.Stats(bare_profiler)),
    ):
        print(f"===== {title} =====")
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(40)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--latencies", default="0,20", help="stub latencies in ms")
    parser.add_argument("--profile", metavar="DB:LATENCY_MS", help="profile one round instead")
    parser.add_argument("--output", type=Path, default=RESULTS / "overhead.json")
    args = parser.parse_args()
    quiet_logs()
    with tempfile.TemporaryDirectory(prefix="auditor-overhead-") as tmp:
        workdir = Path(tmp)
        if args.profile:
            profile(args.profile, args.requests, args.concurrency, workdir)
            return
        started = time.time()
        info = machine()
        ceiling = stub_ceiling(args.requests * 2, args.concurrency, workdir)
        print(
            f"stub ceiling: raw client {ceiling['raw_client']['rps']:.0f} req/s (stub at "
            f"{ceiling['raw_client']['stub_cpu_share']:.0%} of a core); bare httpx loop "
            f"{ceiling['bare_httpx_loop']['rps']:.0f} req/s (stub at "
            f"{ceiling['bare_httpx_loop']['stub_cpu_share']:.0%}, client at "
            f"{ceiling['bare_httpx_loop']['client_cpu_share']:.0%})",
            flush=True,
        )
        runs = []
        for db in args.databases.split(","):
            for latency in (float(x) for x in args.latencies.split(",")):
                result = measure(db, latency, args.requests, args.concurrency, args.reps, workdir)
                runs.append(result)
                print(
                    f"{db:8s} stub {latency:4.0f} ms: bare {result['median_bare_rps']:7.1f} "
                    f"req/s, round {result['median_round_rps']:7.1f} req/s "
                    f"(send phase {result['median_round_send_phase_rps']:7.1f}), "
                    f"ratio {result['ratio']:.2f} (send phase {result['ratio_send_phase']:.2f}), "
                    f"CPU ms/request bare {result['bare_cpu_ms_per_request']:.2f} "
                    f"round {result['round_cpu_ms_per_request']:.2f} (its own process "
                    f"{result['round_event_loop_process_cpu_ms_per_request']:.2f}), "
                    f"durable {result['every_sample_durable']}",
                    flush=True,
                )
    out = {
        "benchmark": "overhead",
        "machine": info,
        "parameters": {
            "requests": args.requests,
            "concurrency": args.concurrency,
            "reps": args.reps,
            "limits": "requests_per_second 1e6 (burst = concurrency), tokens_per_minute 1e9, "
            "max_concurrency = concurrency; retries: default policy (4 attempts)",
            "rate": "requests / wall time of run_round_async (setup, send-and-store, "
            "findings); send phase: start_round to finish_round",
        },
        "elapsed_s": time.time() - started,
        "goal_ratio": 0.7,
        "stub_ceiling": ceiling,
        "runs": runs,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
