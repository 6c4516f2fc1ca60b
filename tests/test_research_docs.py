"""docs/research.md holds true: its column tables are the Parquet schema, and its DuckDB
queries and pandas examples run over a real export and answer what they claim (computed here
from the facts the database was written with)."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pytest
from helpers.cli import ROOT
from helpers.exports import Facts, build

from auditor.report.parquet import TABLES, export_parquet
from auditor.report.parquet.schema import FIELDS
from auditor.report.selection import Filters

DOC = (ROOT / "docs" / "research.md").read_text(encoding="utf-8")
TYPES = {
    "date32": pa.date32(),
    "string": pa.string(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "timestamp[us, UTC]": pa.timestamp("us", tz="UTC"),
}


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC, flags=re.S)


def documented_columns(table: str) -> list[tuple[str, pa.DataType]]:
    section = DOC.split(f"### {table}\n", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| `([^`]+)` \| ([^|]+?) \|", section, flags=re.M)
    return [(name, TYPES[kind]) for name, kind in rows]


@pytest.mark.parametrize("table", TABLES)
def test_the_column_tables_are_the_schema(table: str) -> None:
    columns = documented_columns(table)
    fields = [(f.name, f.type) for f in FIELDS[table]]
    if table == "samples":
        assert columns[-1] == ("score_<metric>", pa.float64())
        columns = columns[:-1]
    assert columns == fields


@pytest.fixture
def exported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Facts:
    """The docs' working directory: `auditor.db` and its export in `export/`."""
    facts = build(f"sqlite:///{tmp_path / 'auditor.db'}")
    export_parquet(facts.store, Filters(), tmp_path / "export")
    monkeypatch.chdir(tmp_path)
    return facts


def greedy_agreement(facts: Facts) -> dict[tuple[Any, str, str], tuple[int, float]]:
    """(day, model, provider) -> (answers compared, agreement), from the facts."""
    samples = facts.samples.values()
    key = lambda s: (s["round_id"], s["model"], s["probe_hash"], s["sample_index"])  # noqa: E731
    reference = {
        key(s): s["output_text"] for s in samples if s["provider"] == "reference" and s["ok"]
    }
    pairs: dict[tuple[Any, str, str], list[bool]] = defaultdict(list)
    for s in samples:
        greedy = s["provider_kind"] == "provider" and s["ok"] and s["temperature"] == 0
        if greedy and key(s) in reference:
            pairs[(s["day"], s["model"], s["provider"])].append(
                s["output_text"] == reference[key(s)]
            )
    return {k: (len(v), round(sum(v) / len(v), 3)) for k, v in pairs.items()}


def test_the_duckdb_queries(exported: Facts) -> None:
    agreement_sql, pass_rate_sql, tests_sql = blocks("sql")
    got = {
        (day, model, provider): (n, rate)
        for day, model, provider, n, rate in duckdb.sql(agreement_sql).fetchall()
    }
    want = greedy_agreement(exported)
    assert got == {k: (n, pytest.approx(rate)) for k, (n, rate) in want.items()}
    assert {rate for _, rate in want.values()} == {0.0, 1.0}, "bolt agrees, acme never"

    passes: dict[tuple[str, str], list[float]] = {}  # every endpoint, scored or not
    for s in exported.samples.values():
        scored = passes.setdefault((s["model"], s["provider"]), [])
        if s.get("score_expect_pass") is not None:
            scored.append(s["score_expect_pass"])
    rows = duckdb.sql(pass_rate_sql).fetchall()
    assert {(m, p): n for m, p, n, _ in rows} == {k: len(v) for k, v in passes.items()}
    assert any(n == 0 for _, _, n, _ in rows), "a model whose files lack the column"
    for model, provider, _, rate in rows:
        values = passes[(model, provider)]
        assert rate == (pytest.approx(round(sum(values) / len(values), 3)) if values else None)

    rejected: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for t in exported.tests:
        if t["status"] == "tested":
            rejected[(t["provider"], t["test"])][0] += 1
            rejected[(t["provider"], t["test"])][1] += t["p_value"] < 0.05
    rows = duckdb.sql(tests_sql).fetchall()
    assert {(p, t): [n, r] for p, t, n, r in rows} == dict(rejected)
    assert [r[3] for r in rows] == sorted((r[3] for r in rows), reverse=True)


def test_the_python_examples(exported: Facts) -> None:
    namespace: dict[str, Any] = {}
    for block in blocks("python"):
        exec(compile(block, "docs/research.md", "exec"), namespace)

    agreement = namespace["agreement"]
    assert isinstance(agreement, pd.Series)
    want = greedy_agreement(exported)
    assert {k: v for k, v in agreement.items()} == {k: r for k, (_, r) in want.items()}

    means = namespace["means"]
    values: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for s in exported.samples.values():
        for column, v in s.items():
            if column.startswith("score_") and v is not None:
                values[(s["model"], s["provider"], column.removeprefix("score_"))].append(v)
    assert {k: pytest.approx(v) for k, v in means.items()} == {
        k: sum(v) / len(v) for k, v in values.items()
    }

    kinds = namespace["kinds"]
    deviant = [d for d in exported.diagnoses if d["provider"] == "acme" and d["rank"] == 0]
    assert dict(kinds) == {"quantization": len(deviant)}

    frame = namespace["frame"]
    assert len(frame) == len(exported.samples)
    assert {"score_chars", "score_expect_pass", "score_likelihood"} <= set(frame.columns)
