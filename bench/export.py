"""Parquet export at scale: `auditor export --format parquet` of the 1-million-sample database
of bench/db_scale.py, its peak resident memory and its time.

Builds the database of bench/db_scale.py (by default 1,000,000 samples over 30 days from 20
providers of 4 models and their 4 reference engines, 2.9M scores, 19,200 findings; its
`Dataset`, `load_sqlite` and `load_postgres`, loaded on its schema and migrated to head), or
reuses one (`--sqlite PATH`, `--pg-database NAME`). Then runs the export in a
fresh Python process exactly as the console script does (`auditor.cli.main`), with pyarrow
(and pandas, which pyarrow imports when it first builds an array from Python values) and the
export's modules imported first so that the baseline counts them: its resident
memory after the imports, its peak (VmHWM, read from /proc when the command returns) and a
timeline of its resident memory every 0.5 s, the command's wall time, and what it wrote
(rows, files, bytes per table). Then re-exports one day into the same directory (the daily
append: that day's files replaced), and reads the export back: DuckDB's row counts per table
against the database's, its column types over the union of the files (union_by_name), and
the time of docs/research.md's greedy-agreement query over a month of files. Writes
bench/results/export.json.

    nice -n 19 .venv/bin/python bench/export.py [--backends sqlite,postgresql]
        [--samples 1000000] [--days 30] [--sqlite PATH] [--pg-database NAME] [--keep]
        [--out-dir DIR]

The goal (issue 17): peak RSS under 300 MiB for the 1M-sample database.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import db_scale  # bench/db_scale.py, beside this file: the 1M-sample generator and loaders
import duckdb
import psycopg
from overhead import machine
from sqlalchemy import text
from sqlalchemy.engine import make_url

from auditor.storage.db import current_revision, head_revision, make_engine, upgrade

ROOT = Path(__file__).resolve().parents[1]
GOAL_MIB = 300
CHILD = r"""
import json, os, sys, threading, time
from pathlib import Path

def status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])

t0 = time.perf_counter()
import pandas, pyarrow, pyarrow.parquet  # noqa: E401  (pyarrow imports pandas for arrays)
import auditor.report.parquet, auditor.report.selection  # noqa: E401
from auditor.cli import main
result = {"imports_s": time.perf_counter() - t0, "rss_after_imports_kib": status("VmRSS")}
timeline, stop = [], threading.Event()
start = time.perf_counter()

def watch():
    while not stop.wait(0.5):
        timeline.append((round(time.perf_counter() - start, 1), status("VmRSS")))

threading.Thread(target=watch, daemon=True).start()
code = 0
try:
    main(json.loads(sys.argv[1]))
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else 0
stop.set()
result.update(
    code=code,
    command_s=time.perf_counter() - start,
    peak_rss_kib=status("VmHWM"),
    rss_at_end_kib=status("VmRSS"),
    timeline=timeline,
)
Path(sys.argv[2]).write_text(json.dumps(result))
"""


# --- the databases (as bench/dashboard.py builds them) -------------------------------------


def build_sqlite(data: db_scale.Dataset, path: Path) -> dict[str, Any]:
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        p.unlink(missing_ok=True)
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine, db_scale.BEFORE)
    engine.dispose()
    print(f"sqlite: loading {path}", flush=True)
    load = db_scale.load_sqlite(path, data)
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    with sqlite3.connect(path) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return load


def build_postgres(data: db_scale.Dataset, pg: db_scale.Postgres) -> dict[str, Any]:
    engine = make_engine(pg.url())
    upgrade(engine, db_scale.BEFORE)
    engine.dispose()
    print(f"postgresql: loading database {pg.name}", flush=True)
    load = db_scale.load_postgres(pg.dsn, data, 3)
    engine = make_engine(pg.url())
    upgrade(engine)
    engine.dispose()
    return load


@contextmanager
def niced_backends(admin_dsn: str, database: str) -> Iterator[None]:
    """While inside, give the PostgreSQL server processes serving `database` (this
    benchmark's own connections, and their parallel workers) this process's niceness, so that
    a niced run stays niced on the server side too (a no-op when this process is not
    niced)."""
    niceness = os.nice(0)
    stop = threading.Event()

    def renice() -> None:
        seen: set[int] = set()
        with psycopg.connect(admin_dsn, autocommit=True) as con:
            while not stop.wait(1.0):
                pids = [
                    pid
                    for (pid,) in con.execute(
                        "SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,)
                    )
                ]
                for pid in set(pids) - seen:
                    with suppress(OSError):  # ended meanwhile, or not ours to renice
                        os.setpriority(os.PRIO_PROCESS, pid, niceness)
                    seen.add(pid)

    watcher = threading.Thread(target=renice, name="renice-backends", daemon=True)
    if niceness > 0:
        watcher.start()
    try:
        yield
    finally:
        stop.set()
        if watcher.is_alive():
            watcher.join(5)


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
        found = con.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return found is not None


# --- the export -----------------------------------------------------------------------------


def mib(kib: float) -> float:
    return round(kib / 1024, 1)


def run_export(url: str, out: Path, *extra: str) -> dict[str, Any]:
    """`auditor export --format parquet -o OUT` in a fresh process; its figures."""
    argv = ["export", "--format", "parquet", "-o", str(out), "--database", url, *extra]
    report = Path(tempfile.mkstemp(prefix="bench-export-", suffix=".json")[1])
    try:
        t = time.perf_counter()
        child = subprocess.run(
            [sys.executable, "-c", CHILD, json.dumps(argv), str(report)],
            capture_output=True,
            text=True,
            env={**os.environ, "NO_COLOR": "1"},
            check=False,
        )
        wall = time.perf_counter() - t
        if child.returncode != 0:
            raise SystemExit(f"export failed ({child.returncode}): {child.stderr.strip()}")
        found = json.loads(report.read_text())
    finally:
        report.unlink(missing_ok=True)
    if found["code"] != 0:
        raise SystemExit(f"export exited {found['code']}: {child.stderr.strip()}")
    timeline = found["timeline"]
    quarters = [timeline[min(len(timeline) - 1, len(timeline) * q // 4)] for q in (1, 2, 3, 4)]
    return {
        "argv": ["auditor", "export", "--format", "parquet", "-o", "DIR", "--database", "URL",
                 *extra],
        "printed": child.stderr.strip(),
        "wall_s": round(wall, 1),
        "command_s": round(found["command_s"], 1),
        "imports_s": round(found["imports_s"], 2),
        "rss_after_imports_mib": mib(found["rss_after_imports_kib"]),
        "peak_rss_mib": mib(found["peak_rss_kib"]),
        "rss_at_end_mib": mib(found["rss_at_end_kib"]),
        "rss_mib_at_quarters_of_the_run": [
            {"t_s": t, "rss_mib": mib(kib)} for t, kib in quarters
        ] if timeline else [],
        "rss_samples": len(timeline),
    }  # fmt: skip


def written(out: Path) -> dict[str, Any]:
    tables = {}
    for table in ("samples", "findings", "tests", "diagnoses"):
        files = sorted((out / table).glob("day=*/model=*/*.parquet"))
        tables[table] = {
            "files": len(files),
            "mib": round(sum(f.stat().st_size for f in files) / 2**20, 1),
            "partitions_days": len({f.parent.parent.name for f in files}),
        }
    return tables


def database_counts(url: str) -> dict[str, int]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            findings = list(conn.execute(text("SELECT tests, diagnoses FROM findings")))
            counts = {
                "samples": conn.execute(text("SELECT count(*) FROM samples")).scalar_one(),
                "findings": len(findings),
            }
    finally:
        engine.dispose()
    counts["tests"] = sum(len(_decoded(t)) for t, _ in findings)
    counts["diagnoses"] = sum(len(_decoded(d)) for _, d in findings)
    return counts


def _decoded(value: Any) -> list[Any]:
    """A JSON list column (text on SQLite, decoded on PostgreSQL); [] for null."""
    found = json.loads(value) if isinstance(value, str) else value
    return list(found or [])


GREEDY_AGREEMENT = """
WITH s AS (SELECT * FROM read_parquet('{out}/samples/**/*.parquet', union_by_name = true)),
ref AS (SELECT round_id, model, probe_hash, sample_index, output_text AS reference_text
        FROM s WHERE provider_kind = 'reference' AND ok)
SELECT s.day, s.model, s.provider, count(*) AS greedy_answers,
       round(avg(CASE WHEN s.output_text = ref.reference_text THEN 1 ELSE 0 END), 3) AS agreement
FROM s JOIN ref USING (round_id, model, probe_hash, sample_index)
WHERE s.provider_kind = 'provider' AND s.ok AND s.temperature = 0
GROUP BY ALL ORDER BY ALL
"""


def read_back(out: Path, counts: dict[str, int]) -> dict[str, Any]:
    """DuckDB over the files: row counts against the database's, types, one docs query."""
    con = duckdb.connect()
    result: dict[str, Any] = {"duckdb": duckdb.__version__, "rows": {}, "matches_database": {}}
    for table in counts:
        source = f"read_parquet('{out}/{table}/**/*.parquet', union_by_name = true)"
        ((n,),) = con.execute(f"SELECT count(*) FROM {source}").fetchall()
        result["rows"][table] = n
        result["matches_database"][table] = n == counts[table]
        if table == "samples":
            described = con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
            result["samples_columns"] = {name: kind for name, kind, *_ in described}
    t = time.perf_counter()
    rows = con.execute(GREEDY_AGREEMENT.format(out=out)).fetchall()
    result["greedy_agreement_query"] = {
        "seconds": round(time.perf_counter() - t, 2),
        "rows": len(rows),
        "first": [str(v) for v in rows[0]] if rows else None,
    }
    con.close()
    return result


def bench(url: str, out_dir: Path) -> dict[str, Any]:
    out = out_dir / "export"
    shutil.rmtree(out, ignore_errors=True)
    print(f"  exporting to {out}", flush=True)
    full = run_export(url, out)
    print(f"  {full['printed']}", flush=True)
    print(f"  {full['command_s']} s, peak RSS {full['peak_rss_mib']} MiB", flush=True)
    counts = database_counts(url)
    days = sorted(p.name.removeprefix("day=") for p in (out / "samples").iterdir())
    again = days[len(days) // 2]
    print(f"  exporting {again} again", flush=True)
    one_day = run_export(url, out, "--since", again, "--until", again)
    print(f"  {one_day['printed']}", flush=True)
    return {
        "full": full,
        "written": written(out),
        "one_day_again": {"day": again, **one_day},
        "database_rows": counts,
        "read_back": read_back(out, counts),
        "goal_peak_rss_mib": GOAL_MIB,
        "goal_met": full["peak_rss_mib"] < GOAL_MIB and one_day["peak_rss_mib"] < GOAL_MIB,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--sqlite", type=Path, default=None, help="build or reuse this file")
    parser.add_argument("--pg-database", default=None, help="build or reuse this database")
    parser.add_argument("--keep", action="store_true", help="keep the databases built")
    parser.add_argument("--out-dir", type=Path, default=None, help="where the exports go")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "export.json")
    args = parser.parse_args()

    started = time.perf_counter()
    result: dict[str, Any] = {
        "benchmark": "export",
        "machine": machine(),
        "command": "nice -n 19 .venv/bin/python bench/export.py",
        "schema": head_revision(),
        "measured": "`auditor export --format parquet -o DIR --database URL` in a fresh process "
        "(auditor.cli.main, as the console script); peak_rss_mib: its VmHWM at the end, "
        "pyarrow and the export's modules imported before the command (rss_after_imports_mib)",
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
            "rounds": len(data.rounds),
            "builder": "bench/db_scale.py (Dataset, load_sqlite, load_postgres)",
        }
    out_dir = args.out_dir or Path(tempfile.mkdtemp(prefix="bench_export_"))
    try:
        if "sqlite" in backends:
            if reuse_sqlite:
                path = args.sqlite.resolve()
                build = reuse(f"sqlite:///{path}")
            else:
                path = args.sqlite or Path(tempfile.mkdtemp(prefix="export_db_")) / "export.db"
                assert data is not None
                build = build_sqlite(data, path)
            url = f"sqlite:///{path}"
            print(f"sqlite {sqlite3.sqlite_version}: {path}", flush=True)
            try:
                result["sqlite"] = {
                    "version": sqlite3.sqlite_version,
                    "file_mib": round(path.stat().st_size / 2**20, 1),
                    "build": build,
                    **bench(url, out_dir / "sqlite"),
                }
            finally:
                if args.keep or args.sqlite:
                    print(f"kept: --sqlite {path}", flush=True)
                else:
                    shutil.rmtree(path.parent, ignore_errors=True)
        if "postgresql" in backends:
            name = args.pg_database or f"bench_export_{os.getpid()}"
            pg: db_scale.Postgres | None = None  # built here (else reused)
            try:
                with niced_backends(args.pg_url, name):
                    if reuse_pg:
                        dsn = str(make_url(args.pg_url).set(database=name))
                        url = dsn.replace("postgresql://", "postgresql+psycopg://", 1)
                        build = reuse(url)
                    else:
                        pg = db_scale.Postgres(args.pg_url, name)
                        url = pg.url()
                        assert data is not None
                        build = build_postgres(data, pg)
                    print(f"postgresql: database {name}", flush=True)
                    result["postgresql"] = {"build": build, **bench(url, out_dir / "postgresql")}
            finally:
                if args.keep or args.pg_database or pg is None:
                    print(f"kept: --pg-database {name}", flush=True)
                else:
                    pg.drop()
    finally:
        if args.out_dir is None:
            shutil.rmtree(out_dir, ignore_errors=True)
    result["wall_s"] = round(time.perf_counter() - started, 1)
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out} ({result['wall_s']} s)")


if __name__ == "__main__":
    main()
