"""`auditor export`: the Parquet directory and the filters, through the command as users run
it (a warm fork of `auditor.cli.main`; one run of the real console script): what it writes
matches the database, and every bad filter is exit code 2 with one line."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pandas as pd
import pytest
from helpers.cli import assert_one_line_error, run_auditor
from helpers.exports import DAY1, DAY2, M1, Facts, build
from helpers.zygote import Zygote

from auditor import results


@pytest.fixture
def facts(db_url: str) -> Facts:
    return build(db_url)


def export(zygote: Zygote, facts: Facts, cwd: Path, *argv: str) -> tuple[int, str]:
    return zygote.command(["export", *argv, "--database", facts.url], cwd)


def test_parquet_export_appends_days_and_matches_the_database(
    facts: Facts, tmp_path: Path, zygote: Zygote
) -> None:
    out = tmp_path / "export"
    code, output = export(zygote, facts, tmp_path, "--format", "parquet", "-o", str(out),
                          "--until", "2025-03-01")  # fmt: skip
    day1 = facts.sample_rows(day=DAY1)
    assert code == 0, output
    assert output.strip().splitlines() == [
        f"wrote {len(day1)} samples, 6 findings (18 tests, 4 diagnoses) of 1 day(s) to {out} "
        f"(8 files, 0.1 MiB; 0 replaced, 0 removed)"
    ]
    code, output = export(zygote, facts, tmp_path, "--format", "parquet", "-o", str(out),
                          "--since", "2025-03-02")  # fmt: skip
    assert code == 0 and "0 replaced, 0 removed" in output, output
    with results.open(facts.url) as database, results.open(out) as files:
        for table in ("samples", "findings", "tests", "diagnoses"):
            pd.testing.assert_frame_equal(getattr(database, table)(), getattr(files, table)())
    assert sorted(p.name for p in (out / "samples").iterdir()) == [
        f"day={DAY1}",
        f"day={DAY2}",
    ]


BAD = [
    (["--format", "parquet", "-o", "x", "--round", "r-a,r-nope"], "--round: no round 'r-nope'"),
    (["--format", "parquet", "-o", "x", "--model", "m9"], "--model: no model 'm9'"),
    (["--format", "parquet", "-o", "x", "--provider", "zed"], "--provider: no provider 'zed'"),
    (["--format", "parquet", "-o", "x", "--suite", "deep"], "--suite: no round of suite 'deep'"),
    (["--format", "parquet", "-o", "x", "--since", "2025-3-1x"], "--since: not an ISO date"),
    (["--format", "csv", "--until", "tomorrow"], "--until: not an ISO date"),
    (["--format", "jsonl", "--since", "2025-03-02", "--until", "2025-03-01"], "is after --until"),
    (["--format", "parquet"], "--output: --format parquet writes a directory: pass -o DIR"),
    (["--format", "parquet", "-o", "providers.txt"], "--output: providers.txt is a file"),
    (["--format", "jsonl", "--model", "m9"], "--model: no model 'm9'"),
    (["--evidence", "--provider", "acme,bolt"], "--evidence takes one --round and one --provider"),
    (["--evidence", "--since", "2025-03-01"], "--since: not with --evidence"),
]


@pytest.mark.parametrize(("argv", "message"), BAD)
def test_bad_filters_exit_2_with_one_line(
    facts: Facts, tmp_path: Path, zygote: Zygote, argv: list[str], message: str
) -> None:
    (tmp_path / "providers.txt").write_text("a file, not a directory")
    code, output = export(zygote, facts, tmp_path, *argv)
    assert code == 2, output
    assert output.strip().splitlines() == [output.strip()] and "Traceback" not in output
    assert output.startswith("auditor: error: ") and message in output, output
    assert not (tmp_path / "x").exists(), "nothing written"


@pytest.mark.slow  # the real console script, its imports included: about 3 s
def test_the_console_script_says_it_in_one_line(facts: Facts, tmp_path: Path) -> None:
    argv = ["export", "--format", "parquet", "-o", "x", "--database", facts.url]
    result = run_auditor(*argv, "--provider", "nobody", cwd=tmp_path)
    assert_one_line_error(result, "--provider: no provider 'nobody' in the database")


def test_jsonl_and_csv_take_the_filters(facts: Facts, tmp_path: Path, zygote: Zygote) -> None:
    code, output = export(zygote, facts, tmp_path, "--format", "jsonl", "--model", M1,
                          "--provider", "bolt,reference", "--since", "2025-03-02")  # fmt: skip
    assert code == 0, output
    got = [json.loads(line)["sample_id"] for line in output.splitlines()]
    want = facts.sample_rows(model=M1, provider={"bolt", "reference"}, day=DAY2)
    assert got == [r["sample_id"] for r in want]
    code, output = export(zygote, facts, tmp_path, "--format", "csv", "--round", "r-a",
                          "--round", "r-c", "--suite", "core")  # fmt: skip
    assert code == 0, output
    rows = list(csv.DictReader(io.StringIO(output)))
    assert [int(r["sample_id"]) for r in rows] == [
        r["sample_id"] for r in facts.sample_rows(round_id="r-c")
    ]
    code, output = export(zygote, facts, tmp_path, "--format", "jsonl", "--round", "r-b")
    assert code == 0
    assert len(output.splitlines()) == len(facts.sample_rows(round_id="r-b"))
