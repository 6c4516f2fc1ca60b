"""The Parquet export against the database it came from, on SQLite and PostgreSQL: every
sample, score, finding, test and diagnosis written through the real Store comes back from the
files with its value and its documented type; days are replaced and appended; filters select
and refuse as documented."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers.exports import DAY1, DAY2, M1, M2, Facts, build, comparable
from sqlalchemy import select

from auditor.errors import UsageError
from auditor.records import as_utc
from auditor.report.parquet import SCHEMA_VERSION, TABLES, export_parquet, schema
from auditor.report.parquet import files as parquet_files
from auditor.report.parquet import rows as parquet_rows
from auditor.report.parquet.files import write_round_samples
from auditor.report.selection import Filters
from auditor.storage.tables import FindingRow, SampleRow

UNCHECKED = {"started_at", "created_at", "finding_id"}  # set by the database: checked apart


@pytest.fixture
def facts(db_url: str) -> Facts:
    return build(db_url)


def read_rows(directory: Path, table: str) -> list[dict[str, Any]]:
    """Every row of a table's files, each file read alone (no unified schema)."""
    rows = []
    for path in sorted((directory / table).glob("day=*/model=*/*.parquet")):
        rows += pq.read_table(path).to_pylist()
    return rows


def checked(row: dict[str, Any]) -> dict[str, Any]:
    """An exported sample's columns the facts hold, JSON text decoded."""
    return {k: v for k, v in comparable(row, "samples").items() if k not in UNCHECKED}


def expected(fact: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """The fact restricted to the row's columns (a score the sample has none of: null)."""
    return {k: fact.get(k) for k in row if k not in UNCHECKED}


def test_round_trip_of_every_table(facts: Facts, tmp_path: Path) -> None:
    out = tmp_path / "export"
    summary = export_parquet(facts.store, Filters(), out)
    assert summary.days == [DAY1, DAY2]
    assert summary.rows == {
        "samples": len(facts.samples),
        "findings": len(facts.findings),
        "tests": len(facts.tests),
        "diagnoses": len(facts.diagnoses),
    }
    # partitions: day x model, the model's name %-encoded; diagnoses only where there are some
    layout = sorted(str(p.relative_to(out)) for p in out.rglob("*.parquet"))
    assert "samples/day=2025-03-01/model=org%2Fm2/part-0.parquet" in layout
    assert len(layout) == summary.files == 2 * 2 * len(TABLES)  # days x models x tables
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]

    samples = read_rows(out, "samples")
    assert [r["sample_id"] for r in samples] != sorted(facts.samples), "partition order"
    assert sorted(r["sample_id"] for r in samples) == sorted(facts.samples)
    for row in samples:
        assert checked(row) == expected(facts.samples[row["sample_id"]], row)
    # times as the database holds them, UTC
    with facts.store.engine.connect() as conn:
        stored = {
            i: (as_utc(s), as_utc(c))
            for i, s, c in conn.execute(
                select(SampleRow.id, SampleRow.started_at, SampleRow.created_at)  # type: ignore[call-overload]
            )
        }
        finding_ids = {
            (r, m, p): i
            for i, r, m, p in conn.execute(
                select(FindingRow.id, FindingRow.round_id, FindingRow.model, FindingRow.provider)  # type: ignore[call-overload]
            )
        }
    assert {r["sample_id"]: (r["started_at"], r["created_at"]) for r in samples} == stored

    for table, want in (
        ("findings", facts.findings),
        ("tests", facts.tests),
        ("diagnoses", facts.diagnoses),
    ):
        got = [comparable(r, table) for r in read_rows(out, table)]
        for r in got:
            assert r.pop("finding_id") == finding_ids[(r["round_id"], r["model"], r["provider"])]
            r.pop("created_at", None)
        key = lambda r: (r["round_id"], r["model"], r["provider"], r.get("test"), r.get("rank"))  # noqa: E731
        assert sorted(got, key=key) == sorted(want, key=key), table


def test_files_carry_the_documented_schema(facts: Facts, tmp_path: Path) -> None:
    export_parquet(facts.store, Filters(), tmp_path)
    for table in TABLES:
        for path in (tmp_path / table).glob("day=*/model=*/*.parquet"):
            found = pq.read_schema(path)
            meta = found.metadata
            assert meta[b"auditor.schema_version"] == SCHEMA_VERSION.encode()
            assert meta[b"auditor.table"] == table.encode()
            metrics: list[str] = []
            if table == "samples":  # each model's own metrics, and no other
                m1 = "model=m1" in str(path)
                metrics = ["chars", "expect_pass"] if m1 else ["chars", "likelihood"]
            assert found.remove_metadata() == schema(table, metrics).remove_metadata(), path


@pytest.mark.parametrize("table", TABLES)
def test_duckdb_reads_the_types_documented(facts: Facts, tmp_path: Path, table: str) -> None:
    export_parquet(facts.store, Filters(), tmp_path)
    sql = f"SELECT * FROM read_parquet('{tmp_path}/{table}/**/*.parquet', union_by_name = true)"
    described = {name: kind for name, kind, *_ in duckdb.sql(f"DESCRIBE {sql}").fetchall()}
    duck = {
        pa.date32(): "DATE",
        pa.string(): "VARCHAR",
        pa.int64(): "BIGINT",
        pa.float64(): "DOUBLE",
        pa.bool_(): "BOOLEAN",
        pa.timestamp("us", tz="UTC"): "TIMESTAMP WITH TIME ZONE",
    }
    metrics = ["chars", "expect_pass", "likelihood"] if table == "samples" else []
    want = {f.name: duck[f.type] for f in schema(table, metrics)}
    assert described == want
    if table == "samples":  # the union: a metric a model's files lack reads as null
        counts = duckdb.sql(
            f"SELECT model, count(score_expect_pass), count(score_likelihood), "
            f"count(*) FILTER (WHERE day = DATE '2025-03-01') FROM ({sql}) GROUP BY model "
            "ORDER BY model"
        ).fetchall()
        m1 = [s for s in facts.sample_rows(model=M1) if s.get("score_expect_pass") is not None]
        m2 = [s for s in facts.sample_rows(model=M2) if s.get("score_likelihood") is not None]
        day1 = {m: sum(s["day"] == DAY1 for s in facts.sample_rows(model=m)) for m in (M1, M2)}
        assert counts == [(M1, len(m1), 0, day1[M1]), (M2, 0, len(m2), day1[M2])]


def file_ids(directory: Path) -> dict[str, int]:
    """Relative path -> inode of every file: a rewritten file is a new inode."""
    return {str(p.relative_to(directory)): p.stat().st_ino for p in directory.rglob("*.parquet")}


def sample_ids(directory: Path) -> set[int]:
    return {r["sample_id"] for r in read_rows(directory, "samples")}


def test_days_append_and_a_day_exported_again_is_replaced(facts: Facts, tmp_path: Path) -> None:
    out = tmp_path / "export"
    first = export_parquet(facts.store, Filters(until=DAY1), out)
    assert first.days == [DAY1] and first.replaced == first.removed == 0
    day1 = file_ids(out)
    assert day1 and all("day=2025-03-01" in p for p in day1)

    second = export_parquet(facts.store, Filters(since=DAY2), out)  # the next day: appended
    assert second.days == [DAY2] and second.replaced == second.removed == 0
    assert {p: i for p, i in file_ids(out).items() if p in day1} == day1, "day 1 untouched"
    assert sample_ids(out) == set(facts.samples)

    # Day 1 again, narrowed to bolt (m1 only): m1's partitions of day 1 are rewritten with
    # bolt's rows, m1's diagnoses of day 1 (acme's) removed; m2 and day 2 are left alone.
    stray = out / "samples" / "day=2025-03-01" / "model=m1" / ".part-0.parquet.99.tmp"
    stray.write_bytes(b"left by a killed export")
    before = file_ids(out)
    third = export_parquet(facts.store, Filters(until=DAY1, providers=("bolt",)), out)
    after = file_ids(out)
    m1_day1 = [p for p in before if "day=2025-03-01/model=m1/" in p]
    assert third.replaced == 3 and third.removed == 1 and not stray.exists()
    assert set(before) - set(after) == {"diagnoses/day=2025-03-01/model=m1/part-0.parquet"}
    assert all(after[p] != before[p] for p in m1_day1 if p in after), "rewritten"
    assert all(after[p] == i for p, i in before.items() if p not in m1_day1)
    bolt_day1 = {s["sample_id"] for s in facts.sample_rows(provider="bolt", day=DAY1)}
    m1_day1_ids = {s["sample_id"] for s in facts.sample_rows(model=M1, day=DAY1)}
    assert sample_ids(out) == set(facts.samples) - m1_day1_ids | bolt_day1


def test_a_file_of_another_schema_version_is_refused(facts: Facts, tmp_path: Path) -> None:
    old = tmp_path / "samples" / "day=2024-01-01" / "model=m1"
    old.mkdir(parents=True)
    table = pa.table({"day": [date(2024, 1, 1)]}).replace_schema_metadata(
        {"auditor.schema_version": "0"}
    )
    pq.write_table(table, old / "part-0.parquet")
    with pytest.raises(UsageError, match="schema version 0"):
        export_parquet(facts.store, Filters(), tmp_path)
    file = tmp_path / "file"
    file.write_text("")
    with pytest.raises(UsageError, match="is a file"):
        export_parquet(facts.store, Filters(), file)


@pytest.mark.parametrize(
    ("filters", "where"),
    [
        (Filters(rounds=("r-a", "r-c")), {"round_id": {"r-a", "r-c"}}),
        (Filters(suites=("tools",)), {"suite": "tools"}),
        (Filters(models=(M2,)), {"model": M2}),
        (Filters(providers=("reference",)), {"provider": "reference"}),
        (Filters(providers=("acme",), since=DAY2), {"provider": "acme", "day": DAY2}),
        (Filters(since=DAY1, until=DAY1, suites=("core",)), {"round_id": "r-b"}),
    ],
)
def test_filters_choose_the_samples(
    facts: Facts, tmp_path: Path, filters: Filters, where: dict[str, Any]
) -> None:
    export_parquet(facts.store, filters, tmp_path)
    want = {r["sample_id"] for r in facts.sample_rows(**where)}
    assert want and sample_ids(tmp_path) == want
    findings = read_rows(tmp_path, "findings")
    assert {(f["round_id"], f["model"], f["provider"]) for f in findings} == {
        (f["round_id"], f["model"], f["provider"])
        for f in facts.findings
        if (f["round_id"], f["model"], f["provider"])
        in {(s["round_id"], s["model"], s["provider"]) for s in facts.sample_rows(**where)}
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"round": "nope"}, "--round: no round 'nope' in the database"),
        ({"suite": "core,nope"}, "--suite: no round of suite 'nope'"),
        ({"model": "m3"}, "--model: no model 'm3'"),
        ({"provider": ["acme", "zed"]}, "--provider: no provider 'zed'"),
        ({"since": "2025-02-30"}, "--since: not an ISO date"),
        ({"until": "yesterday"}, "--until: not an ISO date"),
        ({"since": "2025-03-02", "until": "2025-03-01"}, "--since: 2025-03-02 is after"),
    ],
)
def test_bad_filters_are_refused_before_anything_is_written(
    facts: Facts, tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(UsageError) as caught:
        export_parquet(facts.store, Filters.parse(**kwargs), tmp_path / "out")
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "out").exists()


def test_streamed_in_chunks_and_row_groups(
    facts: Facts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks of 7 samples, each its own row group: the same rows come back."""
    export_parquet(facts.store, Filters(), tmp_path / "whole")
    monkeypatch.setattr(parquet_rows, "CHUNK", 7)
    monkeypatch.setattr(parquet_files, "ROW_GROUP_ROWS", 5)
    export_parquet(facts.store, Filters(), tmp_path / "chunked")
    path = "samples/day=2025-03-01/model=m1/part-0.parquet"
    assert pq.ParquetFile(tmp_path / "chunked" / path).num_row_groups > 2
    assert pq.ParquetFile(tmp_path / "whole" / path).num_row_groups == 1
    for table in TABLES:
        assert read_rows(tmp_path / "chunked", table) == read_rows(tmp_path / "whole", table)


def test_one_round_as_one_file(facts: Facts, tmp_path: Path) -> None:
    path = tmp_path / "round.parquet"
    with path.open("wb") as f:
        n = write_round_samples(facts.store, "r-a", f)
    table = pq.read_table(path)
    want = facts.sample_rows(round_id="r-a")
    assert n == table.num_rows == len(want)
    assert (
        table.schema.remove_metadata()
        == schema("samples", ["chars", "expect_pass", "likelihood"]).remove_metadata()
    )
    got = table.to_pylist()
    assert [r["sample_id"] for r in got] == [r["sample_id"] for r in want], "in id order"
    for row, fact in zip(got, want, strict=True):
        assert checked(row) == expected(fact, row)
    with pytest.raises(UsageError, match="no round 'r-z'"):
        write_round_samples(facts.store, "r-z", tmp_path / "none.parquet")
