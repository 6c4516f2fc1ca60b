"""`auditor.results`: the same frames from the database and from its Parquet export, with the
Parquet schema's columns, the documented pandas types and the values written (SQLite and
PostgreSQL)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from helpers.exports import DAY2, M1, M2, Facts, build, comparable

from auditor import results
from auditor.errors import UsageError
from auditor.report.parquet import TABLES, export_parquet, schema
from auditor.report.parquet.schema import SCORE_KEYS
from auditor.report.selection import Filters

METRICS = ["chars", "expect_pass", "likelihood"]
# pandas dtype (as str) of each Arrow type: the table in docs/research.md
DTYPES = {
    "date32[day]": "object",
    "string": "str",
    "int64": "Int64",
    "double": "float64",
    "bool": "boolean",
    "timestamp[us, tz=UTC]": "datetime64[us, UTC]",
}


@pytest.fixture
def sources(db_url: str, tmp_path: Path) -> tuple[Facts, results.Results, results.Results]:
    facts = build(db_url)
    export_parquet(facts.store, Filters(), tmp_path / "export")
    return facts, results.open(db_url), results.open(tmp_path / "export")


def plain(value: Any) -> Any:
    """A frame cell as a plain Python value (pandas' NA and NaN: None)."""
    if value is pd.NA or value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value.item() if hasattr(value, "item") else value


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: plain(v) for k, v in row.items()} for row in frame.to_dict("records")]


def test_database_and_export_give_equal_frames(
    sources: tuple[Facts, results.Results, results.Results],
) -> None:
    facts, database, export = sources
    for table in TABLES:
        a = getattr(database, table)()
        b = getattr(export, table)()
        pd.testing.assert_frame_equal(a, b, check_exact=True)
        assert list(a.columns) == schema(table, METRICS if table == "samples" else None).names
        assert {c: str(t) for c, t in a.dtypes.items()} == {
            f.name: DTYPES[str(f.type)]
            for f in schema(table, METRICS if table == "samples" else None)
        }
    samples = database.samples()
    assert list(samples["sample_id"]) == sorted(facts.samples)
    for row in records(samples):
        fact = facts.samples[row["sample_id"]]
        got = comparable(row, "samples")
        assert {k: got[k] for k in fact} == fact
        assert got["started_at"].tzinfo is not None
    database.close()


def test_scores_wide_and_long(sources: tuple[Facts, results.Results, results.Results]) -> None:
    facts, database, export = sources
    wide = export.scores()
    assert list(wide.columns) == [*SCORE_KEYS, *(f"score_{m}" for m in METRICS)]
    m2 = wide[wide["model"] == M2]
    assert m2["score_expect_pass"].isna().all(), "m2's files have no expect_pass column"
    assert m2["score_likelihood"].notna().any()
    narrowed = [c for c in export.scores(models=M2).columns if c.startswith("score_")]
    assert narrowed == ["score_chars", "score_likelihood"], "only metrics with values"
    long = database.scores(long=True)
    pd.testing.assert_frame_equal(long, export.scores(long=True))
    want = sorted(
        (i, m.removeprefix("score_"), v)
        for i, s in facts.samples.items()
        for m, v in s.items()
        if m.startswith("score_") and v is not None
    )
    assert list(long[["sample_id", "metric", "value"]].itertuples(index=False, name=None)) == want
    assert list(long.columns) == [*SCORE_KEYS, "metric", "value"]


@pytest.mark.parametrize(
    ("filters", "where"),
    [
        ({"rounds": "r-a,r-c"}, {"round_id": {"r-a", "r-c"}}),
        ({"suites": ["tools"]}, {"suite": "tools"}),
        ({"models": M1, "providers": "bolt"}, {"model": M1, "provider": "bolt"}),
        ({"since": DAY2}, {"day": DAY2}),
        ({"until": "2025-03-01", "providers": "reference"}, {"provider": "reference"}),
    ],
)
def test_filters_on_both_sources(
    sources: tuple[Facts, results.Results, results.Results],
    filters: dict[str, Any],
    where: dict[str, Any],
) -> None:
    facts, database, export = sources
    want = [r["sample_id"] for r in facts.sample_rows(**where)]
    if "until" in filters:
        want = [r["sample_id"] for r in facts.sample_rows(**where) if r["day"] != DAY2]
    for source in (database, export):
        assert list(source.samples(**filters)["sample_id"]) == want, source.source
    pd.testing.assert_frame_equal(database.samples(**filters), export.samples(**filters))
    pd.testing.assert_frame_equal(database.tests(**filters), export.tests(**filters))


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"rounds": "nope"}, "--round: no round 'nope'"),
        ({"models": "m9"}, "--model: no model 'm9'"),
        ({"providers": "zed"}, "--provider: no provider 'zed'"),
        ({"suites": "deep"}, "--suite: no round of suite 'deep'"),
        ({"since": "03/01/2025"}, "--since: not an ISO date"),
    ],
)
def test_bad_filters_raise_on_both_sources(
    sources: tuple[Facts, results.Results, results.Results],
    filters: dict[str, Any],
    message: str,
) -> None:
    _, database, export = sources
    for source in (database, export):
        with pytest.raises(UsageError, match=message):
            source.samples(**filters)


def test_sources_that_are_not_results(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such export directory or database file"):
        results.open(tmp_path / "absent")
    with pytest.raises(UsageError, match="no such database file"):
        results.open(f"sqlite:///{tmp_path / 'absent.db'}")
    assert not (tmp_path / "absent.db").exists(), "nothing created"
    with pytest.raises(UsageError, match="not a Parquet export"):
        results.open(tmp_path)
    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(UsageError, match="not an auditor results database"):
        results.open(empty)
    with pytest.raises(UsageError, match="not one of samples"):
        (tmp_path / "samples").mkdir()
        results.open(tmp_path).table("scores")
    assert results.open(tmp_path).samples().empty
