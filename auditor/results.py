"""Results for notebooks: pandas frames of samples, scores, findings, tests and diagnoses,
from a results database or a Parquet export directory, with the columns of the Parquet
schema (docs/research.md).

    from auditor import results

    r = results.open("sqlite:///auditor.db")        # or a postgresql:// URL, or "export/"
    samples = r.samples(since="2026-12-01", models="smollm2-135m-instruct")
    scores = r.scores(long=True)                    # one row per sample x metric
    findings, tests = r.findings(), r.tests(providers=["acme", "bolt"])

Every method takes the export's filters: `rounds`, `since` and `until` (UTC days, both
included), `models`, `providers`, `suites` (a name, a comma list or a list); a value the
source does not hold raises `UsageError` naming it. Frames come sorted (samples and scores by
`sample_id`, findings by `finding_id`, tests and diagnoses by finding then their order in
it), whatever the source, so a database and its export give equal frames. Types: int64
columns as pandas' nullable `Int64`, booleans as `boolean`, floats as `float64` (null:
NaN), text as pandas' string dtype, times as `datetime64[us, UTC]`, `day` as `datetime.date`
objects. `table()` gives the same data as a `pyarrow.Table`, for any Arrow library.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from auditor.errors import UsageError
from auditor.report.parquet.rows import finding_batches, sample_batches
from auditor.report.parquet.schema import (
    SCHEMA_VERSION,
    SCORE_KEYS,
    SCORE_PREFIX,
    TABLES,
    schema,
)
from auditor.report.selection import Filters, select_rounds
from auditor.storage.db import current_revision, head_revision, make_engine
from auditor.storage.repository import Store

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Results", "open", "to_pandas"]

Names = str | Iterable[str] | None
Day = str | date | None
_SORT = {
    "samples": [("sample_id", "ascending")],
    "findings": [("finding_id", "ascending")],
    "tests": [("finding_id", "ascending")],
    "diagnoses": [("finding_id", "ascending"), ("rank", "ascending")],
}


def open(source: str | Path) -> Results:  # the module's one verb: `results.open(...)`
    """Results from a database URL (`sqlite:///...`, `postgresql://...`), a SQLite file, or
    an export directory written by `auditor export --format parquet`."""
    text = str(source)
    if "://" in text:
        return DatabaseResults(text)
    path = Path(source).expanduser()
    if path.is_dir():
        return ExportResults(path)
    if path.is_file():
        return DatabaseResults(f"sqlite:///{path.resolve()}")
    raise UsageError(f"{text}: no such export directory or database file")


def _pandas_type(t: pa.DataType) -> Any:
    import pandas as pd

    if pa.types.is_integer(t):
        return pd.Int64Dtype()
    if pa.types.is_boolean(t):
        return pd.BooleanDtype()
    return None  # pandas' own: float64, str, datetime64[us, UTC], date objects


def to_pandas(table: pa.Table) -> pd.DataFrame:
    """An export table as a pandas frame with the documented types."""
    return table.to_pandas(types_mapper=_pandas_type)


class Results(ABC):
    """Frames of one source; see the module's docstring."""

    source: str

    def table(
        self,
        name: str,
        *,
        rounds: Names = None,
        since: Day = None,
        until: Day = None,
        models: Names = None,
        providers: Names = None,
        suites: Names = None,
    ) -> pa.Table:
        """Table `name` (samples, findings, tests or diagnoses) as Arrow, filtered and
        sorted; samples with a score column for each metric that has a value in its rows."""
        if name not in TABLES:
            raise UsageError(f"table: {name!r} is not one of {', '.join(TABLES)}")
        filters = Filters.parse(rounds, since, until, models, providers, suites)
        table = self._read(name, filters)
        if name == "samples":  # the score columns of the metrics these rows have values of
            empty = [
                c
                for c in table.column_names
                if c.startswith(SCORE_PREFIX) and table[c].null_count == table.num_rows
            ]
            table = table.drop_columns(empty)
        return table.sort_by(_SORT[name]) if table.num_rows else table

    @abstractmethod
    def _read(self, name: str, filters: Filters) -> pa.Table:
        """The table's rows the filters select, in any order."""

    def samples(self, **filters: Any) -> pd.DataFrame:
        """One row per sample: request, answer, usage, timing, error, and one `score_*`
        column per metric."""
        return to_pandas(self.table("samples", **filters))

    def scores(self, *, long: bool = False, **filters: Any) -> pd.DataFrame:
        """The samples' keys and score columns; `long=True`: one row per sample and metric
        scored (`metric` without the prefix, `value`)."""
        table = self.table("samples", **filters)
        metrics = [c for c in table.column_names if c.startswith(SCORE_PREFIX)]
        frame = to_pandas(table.select([*SCORE_KEYS, *metrics]))
        if not long:
            return frame
        melted = frame.melt(
            id_vars=list(SCORE_KEYS), value_vars=metrics, var_name="metric", value_name="value"
        )
        melted = melted[melted["value"].notna()]
        melted["metric"] = melted["metric"].str.removeprefix(SCORE_PREFIX)
        return melted.sort_values(["sample_id", "metric"], kind="stable").reset_index(drop=True)

    def findings(self, **filters: Any) -> pd.DataFrame:
        """One row per finding (a provider in a round): verdict, severity, top diagnosis."""
        return to_pandas(self.table("findings", **filters))

    def tests(self, **filters: Any) -> pd.DataFrame:
        """One row per test of a finding."""
        return to_pandas(self.table("tests", **filters))

    def diagnoses(self, **filters: Any) -> pd.DataFrame:
        """One row per diagnosis of a finding, `rank` 0 the most likely."""
        return to_pandas(self.table("diagnoses", **filters))

    def close(self) -> None:  # noqa: B027  (only a database has something to release)
        """Release the source (a database's connections)."""

    def __enter__(self) -> Results:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class DatabaseResults(Results):
    """Frames read from the results database, through the export's own code."""

    def __init__(self, url: str) -> None:
        self.source = url
        if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
            raise UsageError(f"{url}: no such database file")
        engine = make_engine(url)
        revision = current_revision(engine)
        if revision != head_revision():
            engine.dispose()
            if revision is None:
                raise UsageError(f"{url}: not an auditor results database (no schema)")
            raise UsageError(
                f"{url}: schema at revision {revision}, this auditor reads {head_revision()}: "
                "run `auditor db upgrade`"
            )
        self.store = Store(engine)

    def _read(self, name: str, filters: Filters) -> pa.Table:
        selection = select_rounds(self.store, filters)
        endpoints = sorted(selection.endpoints.values(), key=lambda e: e.id)
        if name == "samples":
            target, batches = sample_batches(self.store.engine, selection.rounds, endpoints)
            return pa.Table.from_batches(list(batches), schema=target)
        batch = finding_batches(self.store.engine, selection.rounds, endpoints)[name]
        return pa.Table.from_batches([batch])

    def close(self) -> None:
        self.store.engine.dispose()


class ExportResults(Results):
    """Frames read from an export directory: each table's files, their columns unioned by
    name (a metric a file lacks reads as null)."""

    def __init__(self, directory: Path) -> None:
        self.source = str(directory)
        self.directory = directory
        if not any((directory / t).is_dir() for t in TABLES):
            raise UsageError(f"{directory}: not a Parquet export (no {'/, '.join(TABLES)}/)")

    def files(self, name: str, filters: Filters | None = None) -> list[Path]:
        """Table `name`'s files, those of days and models outside `filters` left out by their
        directory names; hidden files (an export under way) never."""
        found = []
        for path in sorted((self.directory / name).glob("day=*/model=*/*.parquet")):
            if path.name.startswith("."):
                continue
            day = date.fromisoformat(path.parent.parent.name.removeprefix("day="))
            model = unquote(path.parent.name.removeprefix("model="))
            if filters is not None and not _in_scope(filters, day, model):
                continue
            found.append(path)
        return found

    def _read(self, name: str, filters: Filters) -> pa.Table:
        self._check_names(filters)
        files = self.files(name, filters)
        metrics: set[str] = set()
        for path in files:
            found = pq.read_schema(path)
            version = (found.metadata or {}).get(b"auditor.schema_version", b"?").decode()
            if version != SCHEMA_VERSION:
                raise UsageError(
                    f"{path}: schema version {version}; this auditor reads {SCHEMA_VERSION}"
                )
            metrics |= {
                n.removeprefix(SCORE_PREFIX) for n in found.names if n.startswith(SCORE_PREFIX)
            }
        target = schema(name, sorted(metrics) if name == "samples" else None)
        if not files:
            return target.empty_table()
        dataset = ds.dataset([str(f) for f in files], schema=target, format="parquet")
        return dataset.to_table(filter=_expression(filters))

    def _check_names(self, filters: Filters) -> None:
        """A round, suite, model or provider the export does not hold is an error, as it is
        against a database."""
        wanted = {
            "round_id": ("--round", "round", filters.rounds),
            "suite": ("--suite", "round of suite", filters.suites),
            "model": ("--model", "model", filters.models),
            "provider": ("--provider", "provider", filters.providers),
        }
        columns = [c for c, (_, _, values) in wanted.items() if values]
        if not columns:
            return
        have: dict[str, set[str]] = {c: set() for c in columns}
        for path in self.files("samples"):
            part = pq.read_table(path, columns=columns)
            for c in columns:
                have[c] |= set(pc.unique(part[c]).to_pylist())
        for c in columns:
            option, what, values = wanted[c]
            missing = [v for v in values if v not in have[c]]
            if missing:
                raise UsageError(f"{option}: no {what} {missing[0]!r} in the export")


def _in_scope(filters: Filters, day: date, model: str) -> bool:
    if filters.since is not None and day < filters.since:
        return False
    if filters.until is not None and day > filters.until:
        return False
    return not filters.models or model in filters.models


def _expression(filters: Filters) -> pc.Expression | None:
    parts = []
    for column, values in (
        ("round_id", filters.rounds),
        ("suite", filters.suites),
        ("model", filters.models),
        ("provider", filters.providers),
    ):
        if values:
            parts.append(pc.field(column).isin(list(values)))
    if filters.since is not None:
        parts.append(pc.field("day") >= pa.scalar(filters.since, pa.date32()))
    if filters.until is not None:
        parts.append(pc.field("day") <= pa.scalar(filters.until, pa.date32()))
    if not parts:
        return None
    expression = parts[0]
    for part in parts[1:]:
        expression = expression & part
    return expression
