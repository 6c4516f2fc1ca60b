"""Dashboard speed: its pages and JSON API on the 1-million-sample database of bench/db_scale.py.

Builds the database of bench/db_scale.py (by default 1,000,000 samples over 30 days from 20
providers of 4 models and their 4 reference engines, with scores and findings; the same
builder functions, loaded on the schema before its indexes and migrated to head), on SQLite
and on PostgreSQL, then serves the dashboard with the real uvicorn server (`WebServer`) in a
child process on a loopback port and times, from this process over HTTP keep-alive, `--requests`
GETs of each page and API endpoint after `--warmup` untimed ones: the median and the 95th
percentile of the time from sending the request to having read the whole body, and the first
request's time (the server's caches and the database's pages cold for that query, the OS page
cache as the load left it). Then, in this process, one more request per target with every SQL
statement timed (SQLAlchemy cursor events): their count, total time and the slowest
statements with their plan (SQLite: EXPLAIN QUERY PLAN; PostgreSQL: EXPLAIN (ANALYZE,
BUFFERS)). Writes bench/results/dashboard.json.

    nice -n 10 .venv/bin/python bench/dashboard.py [--requests 30] [--warmup 3]
        [--backends sqlite,postgresql] [--samples 1000000] [--days 30]
        [--pg-url postgresql://postgres@127.0.0.1:5432/postgres]
        [--sqlite PATH] [--pg-database NAME] [--keep]

`--sqlite PATH` / `--pg-database NAME`: where the database is built and kept; when it already
exists (an earlier run's), it is reused instead of built again (about 1 minute for SQLite, 3
for PostgreSQL on 2 cores), migrated to head first if it is behind. `--keep` keeps the
databases built in a temporary place.

The targets: the pages `/` (overview), `/rounds`, `/rounds/{id}` (the latest round),
`/providers/{id}` (a provider the data makes deviant, 720 core rounds and 240 others in 30
days), `/findings/{id}` (its latest deviant finding), and the API endpoints `/api/overview`,
`/api/providers/{id}`, `/api/samples?provider=NAME` (its newest samples, a page) and
`/api/findings?verdict=deviant`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import db_scale  # bench/db_scale.py, beside this file (the script's directory is on sys.path)
import httpx
import psycopg
from overhead import machine  # bench/overhead.py, beside this file
from sqlalchemy import event, text
from sqlalchemy.engine import Engine, make_url
from starlette.applications import Starlette

from auditor.operations.settings import ServerConfig
from auditor.storage.db import current_revision, head_revision, make_engine, upgrade
from auditor.storage.repository import Store
from auditor.web.dashboard import create_dashboard
from auditor.web.server import WebServer

ROOT = Path(__file__).resolve().parents[1]
DEVIANT_MODEL, DEVIANT_PROVIDER = "llama-3.1-8b-instruct", "cirrus"  # deviant in db_scale
SLOW_MS = 300.0


# --- the app, served in a child process ---------------------------------------------------


def dashboard_app(store: Store) -> Starlette:
    """The dashboard as `auditor serve` serves it (open access: it listens on loopback)."""
    return create_dashboard(store)


def serve(url: str, conn: Connection) -> None:
    """The child process: serve the dashboard on a free loopback port, send the port, and
    stop when the parent sends anything (or goes away)."""

    async def main() -> None:
        store = Store(make_engine(url))
        async with WebServer(dashboard_app(store), ServerConfig(host="127.0.0.1", port=0)) as web:
            conn.send(web.port)
            await asyncio.get_running_loop().run_in_executor(None, _wait, conn)
        store.engine.dispose()

    asyncio.run(main())


def _wait(conn: Connection) -> None:
    with suppress(EOFError):
        conn.recv()


@contextmanager
def served(url: str) -> Iterator[str]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=serve, args=(url, child), name="dashboard", daemon=True)
    process.start()
    try:
        deadline = time.monotonic() + 120
        while not parent.poll(0.2):
            if not process.is_alive():
                raise RuntimeError(f"the dashboard process exited ({process.exitcode})")
            if time.monotonic() > deadline:
                raise RuntimeError("the dashboard did not start in 120 s")
        yield f"http://127.0.0.1:{parent.recv()}"
    finally:
        parent.send("stop")
        process.join(30)
        if process.is_alive():
            process.terminate()
            process.join(10)


# --- the databases ------------------------------------------------------------------------


def build_sqlite(data: db_scale.Dataset, path: Path) -> dict[str, Any]:
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        p.unlink(missing_ok=True)
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine, db_scale.BEFORE)
    engine.dispose()
    print(f"sqlite: loading {path}", flush=True)
    load = db_scale.load_sqlite(path, data)
    t = time.perf_counter()
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    with sqlite3.connect(path) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    load["migration_to_head_s"] = round(time.perf_counter() - t, 1)
    return load


def build_postgres(data: db_scale.Dataset, pg: db_scale.Postgres) -> dict[str, Any]:
    engine = make_engine(pg.url())
    upgrade(engine, db_scale.BEFORE)
    engine.dispose()
    print(f"postgresql: loading database {pg.name}", flush=True)
    load = db_scale.load_postgres(pg.dsn, data, 3)
    t = time.perf_counter()
    engine = make_engine(pg.url())
    upgrade(engine)
    engine.dispose()
    load["migration_to_head_s"] = round(time.perf_counter() - t, 1)
    return load


def reuse(url: str) -> dict[str, Any]:
    engine = make_engine(url)
    try:
        before = current_revision(engine)
        if before is None:
            raise SystemExit(f"{url}: not an auditor database")
        if before != head_revision():
            upgrade(engine)
        return {"reused": True, "revision_before": before}
    finally:
        engine.dispose()


def pg_exists(admin_dsn: str, name: str) -> bool:
    with psycopg.connect(admin_dsn) as con:
        return (
            con.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            is not None
        )


def row_counts(url: str) -> dict[str, int]:
    """What the database holds, as timed (a reused database was not built by this run)."""
    engine = make_engine(url)
    try:
        with engine.connect() as con:
            return {
                table: con.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
                for table in ("providers", "rounds", "samples", "scores", "findings")
            }
    finally:
        engine.dispose()


def targets(url: str) -> dict[str, str]:
    """Name -> path of every page and endpoint timed, with ids read from the database."""
    engine = make_engine(url)
    try:
        with engine.connect() as con:
            provider_id = con.execute(
                text("SELECT id FROM providers WHERE model = :m AND name = :n"),
                {"m": DEVIANT_MODEL, "n": DEVIANT_PROVIDER},
            ).scalar_one()
            finding_id = con.execute(
                text(
                    "SELECT max(id) FROM findings WHERE verdict = 'deviant' "
                    "AND model = :m AND provider = :n"
                ),
                {"m": DEVIANT_MODEL, "n": DEVIANT_PROVIDER},
            ).scalar_one()
            round_id = con.execute(
                text("SELECT id FROM rounds ORDER BY started_at DESC LIMIT 1")
            ).scalar_one()
    finally:
        engine.dispose()
    return {
        "page /": "/",
        "page /rounds": "/rounds",
        "page /rounds/{id}": f"/rounds/{round_id}",
        "page /providers/{id}": f"/providers/{provider_id}",
        "page /findings/{id}": f"/findings/{finding_id}",
        "api /api/overview": "/api/overview",
        "api /api/providers/{id}": f"/api/providers/{provider_id}",
        "api /api/samples?provider=": f"/api/samples?provider={DEVIANT_PROVIDER}",
        "api /api/findings?verdict=deviant": "/api/findings?verdict=deviant",
    }


# --- timing -------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile, linear between the closest ranks (numpy's default)."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def time_targets(base: str, paths: dict[str, str], requests: int, warmup: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with httpx.Client(base_url=base, trust_env=False, timeout=120) as client:
        for name, path in paths.items():
            times: list[float] = []
            size = status = 0
            for i in range(warmup + requests + 1):
                t = time.perf_counter()
                response = client.get(path)
                body = response.content
                ms = (time.perf_counter() - t) * 1000
                status, size = response.status_code, len(body)
                if status != 200:
                    raise SystemExit(f"GET {path}: HTTP {status}: {body[:300]!r}")
                if i == 0:
                    first = ms
                elif i > warmup:
                    times.append(ms)
            out[name] = {
                "path": path,
                "status": status,
                "bytes": size,
                "first_ms": round(first, 1),
                "median_ms": round(statistics.median(times), 1),
                "p95_ms": round(percentile(times, 95), 1),
                "min_ms": round(min(times), 1),
                "max_ms": round(max(times), 1),
            }
            r = out[name]
            print(
                f"  {name:36} median {r['median_ms']:8.1f} ms  p95 {r['p95_ms']:8.1f} ms  "
                f"first {r['first_ms']:8.1f} ms  {size} bytes",
                flush=True,
            )
    return out


class StatementLog:
    """Every SQL statement an engine runs, with its parameters and time."""

    def __init__(self, engine: Engine) -> None:
        self.statements: list[tuple[str, Any, float]] = []
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        conn.info.setdefault("bench_t", []).append(time.perf_counter())

    def _after(self, conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        started = conn.info["bench_t"].pop()
        self.statements.append((statement, params, (time.perf_counter() - started) * 1000))


def explain(engine: Engine, statement: str, params: Any) -> list[str]:
    prefix = (
        "EXPLAIN QUERY PLAN "
        if engine.dialect.name == "sqlite"
        else "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) "
    )
    with engine.connect() as con:
        rows = con.exec_driver_sql(prefix + statement, params).fetchall()
    lines = [str(r[-1]) if engine.dialect.name == "sqlite" else str(r[0]) for r in rows]
    return [line if len(line) <= 300 else line[:300] + " ..." for line in lines]


def profile_targets(url: str, paths: dict[str, str]) -> dict[str, Any]:
    """One request per target through the app in this process, every statement timed; the
    slowest three with their plans."""
    from starlette.testclient import TestClient

    engine = make_engine(url)
    log = StatementLog(engine)
    out: dict[str, Any] = {}
    try:
        with TestClient(dashboard_app(Store(engine))) as client:
            for name, path in paths.items():
                client.get(path)  # warm
                log.statements.clear()
                t = time.perf_counter()
                response = client.get(path)
                total = (time.perf_counter() - t) * 1000
                assert response.status_code == 200, (path, response.status_code)
                slowest = sorted(log.statements, key=lambda s: -s[2])[:3]
                out[name] = {
                    "request_ms_in_process": round(total, 1),
                    "statements": len(log.statements),
                    "sql_ms": round(sum(s[2] for s in log.statements), 1),
                    "slowest": [
                        {
                            "ms": round(ms, 1),
                            "sql": " ".join(sql.split())[:1500],
                            "plan": explain(engine, sql, params),
                        }
                        for sql, params, ms in slowest
                    ],
                }
    finally:
        engine.dispose()
    return out


def bench(url: str, requests: int, warmup: int) -> dict[str, Any]:
    paths = targets(url)
    with served(url) as base:
        timed = time_targets(base, paths, requests, warmup)
    profile = profile_targets(url, paths)
    slow = {
        name: {
            "median_ms": timed[name]["median_ms"],
            "sql_ms": profile[name]["sql_ms"],
            "slowest_statement": profile[name]["slowest"][0] if profile[name]["slowest"] else None,
        }
        for name in paths
        if timed[name]["median_ms"] > SLOW_MS
    }
    return {"targets": timed, "sql": profile, "slow": slow}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--sqlite", type=Path, default=None, help="reuse this SQLite file")
    parser.add_argument("--pg-database", default=None, help="reuse this PostgreSQL database")
    parser.add_argument("--keep", action="store_true", help="keep the databases built")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "dashboard.json")
    args = parser.parse_args()

    started = time.perf_counter()
    result: dict[str, Any] = {
        "benchmark": "dashboard",
        "machine": machine(),
        "command": "nice -n 10 .venv/bin/python bench/dashboard.py",
        "schema": head_revision(),
        "app": "auditor.web.dashboard.create_dashboard (as `auditor serve`)",
        "timing": f"{args.requests} GETs per target after {args.warmup} untimed ones, one at "
        "a time over one keep-alive connection to uvicorn in another process on 127.0.0.1; "
        "from sending to having read the whole body; first_ms: the first GET of the target",
        "slow_threshold_ms": SLOW_MS,
    }
    backends = args.backends.split(",")
    reuse_sqlite = args.sqlite is not None and args.sqlite.exists()
    reuse_pg = args.pg_database is not None and pg_exists(args.pg_url, args.pg_database)
    data: db_scale.Dataset | None = None
    if ("sqlite" in backends and not reuse_sqlite) or ("postgresql" in backends and not reuse_pg):
        data = db_scale.Dataset(args.samples, args.days, args.seed)
        result["data"] = {
            "samples": args.samples,
            "days": args.days,
            "providers": sum(e.kind == "provider" for e in data.endpoints),
            "reference_endpoints": sum(e.kind == "reference" for e in data.endpoints),
            "rounds": len(data.rounds),
            "builder": "bench/db_scale.py (Dataset, load_sqlite, load_postgres)",
        }
    if "sqlite" in backends:
        if reuse_sqlite:
            path = args.sqlite.resolve()
            build = reuse(f"sqlite:///{path}")
        else:
            path = args.sqlite or Path(tempfile.mkdtemp(prefix="dashboard_")) / "dashboard.db"
            assert data is not None
            build = build_sqlite(data, path)
        url = f"sqlite:///{path}"
        print(f"sqlite {sqlite3.sqlite_version}: {path}", flush=True)
        try:
            result["sqlite"] = {
                "version": sqlite3.sqlite_version,
                "file_mib": round(path.stat().st_size / 2**20, 1),
                "build": build,
                "rows": row_counts(url),
                **bench(url, args.requests, args.warmup),
            }
        finally:
            if args.keep or args.sqlite:
                print(f"kept: --sqlite {path}", flush=True)
            else:
                for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                    p.unlink(missing_ok=True)
                Path(f"{path}.migrate.lock").unlink(missing_ok=True)
                path.parent.rmdir()
    if "postgresql" in backends:
        name = args.pg_database or f"bench_dashboard_{os.getpid()}"
        pg: db_scale.Postgres | None = None  # built here (else reused)
        if reuse_pg:
            dsn = str(make_url(args.pg_url).set(database=name)).replace("+psycopg", "")
            url = dsn.replace("postgresql://", "postgresql+psycopg://", 1)
            build = reuse(url)
        else:
            pg = db_scale.Postgres(args.pg_url, name)
            url, dsn = pg.url(), pg.dsn
            assert data is not None
            build = build_postgres(data, pg)
        with psycopg.connect(dsn) as con:
            version = con.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        print(f"postgresql {version}: database {name}", flush=True)
        try:
            result["postgresql"] = {
                "version": version,
                "build": build,
                "rows": row_counts(url),
                **bench(url, args.requests, args.warmup),
            }
        finally:
            if args.keep or args.pg_database or pg is None:
                print(f"kept: --pg-database {name}", flush=True)
            else:
                pg.drop()
    result["wall_s"] = round(time.perf_counter() - started, 1)
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out} ({result['wall_s']} s)")


if __name__ == "__main__":
    main()
