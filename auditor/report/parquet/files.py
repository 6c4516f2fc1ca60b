"""Writing the Parquet export: a directory of day x model partitions, or one round's samples
as one file (the JSON API's download).

An export rewrites the days it selects, one day at a time: each (day, model) partition in
its scope is written to a hidden temporary file beside its place (readers skip names that
start with a dot) and, once the whole day is written, moved into place; the day's other
files of the models in scope (what an earlier export of that day held and this one no
longer has) are removed. Other days and other models are left alone, so exports append day
by day, and a killed export leaves every partition whole (old or new).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO
from urllib.parse import quote, unquote

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Engine

from auditor.errors import UsageError
from auditor.report.parquet.rows import finding_batches, sample_batches
from auditor.report.parquet.schema import SCHEMA_VERSION, TABLES
from auditor.report.selection import Filters, RoundInfo, Selection, select_rounds
from auditor.storage.repository import Store

PART = "part-0.parquet"
ROW_GROUP_ROWS = 50_000  # at most this many rows buffered before a row group is written...
ROW_GROUP_BYTES = 32 * 2**20  # ... or this many bytes of Arrow data
COMPRESSION = "zstd"


class PartWriter:
    """One Parquet file written row group by row group: batches are buffered up to
    `ROW_GROUP_ROWS` rows or `ROW_GROUP_BYTES` bytes, then written out."""

    def __init__(self, where: str | Path | IO[bytes], target: pa.Schema) -> None:
        self.writer = pq.ParquetWriter(where, target, compression=COMPRESSION)
        self.buffer: list[pa.RecordBatch] = []
        self.buffered_rows = self.buffered_bytes = 0
        self.rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        self.buffer.append(batch)
        self.buffered_rows += batch.num_rows
        self.buffered_bytes += batch.nbytes
        self.rows += batch.num_rows
        if self.buffered_rows >= ROW_GROUP_ROWS or self.buffered_bytes >= ROW_GROUP_BYTES:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            table = pa.Table.from_batches(self.buffer)
            self.writer.write_table(table, row_group_size=max(table.num_rows, 1))
        self.buffer, self.buffered_rows, self.buffered_bytes = [], 0, 0

    def close(self) -> None:
        self.flush()
        self.writer.close()


@dataclass
class ExportSummary:
    days: list[date] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    files: int = 0  # written
    replaced: int = 0  # of them, in place of an earlier export's file
    removed: int = 0  # earlier files of the days and models in scope this export no longer has
    bytes: int = 0  # of the files written


def partition_dir(directory: Path, table: str, day: date, model: str) -> Path:
    """Where a partition's files go: `table/day=YYYY-MM-DD/model=NAME` (NAME %-encoded)."""
    return directory / table / f"day={day.isoformat()}" / f"model={quote(model, safe='')}"


def check_directory(directory: Path) -> None:
    """Refuse a file, or an export of another schema version (its columns would not mix)."""
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"--output: {directory} is a file; --format parquet writes a directory")
    for table in TABLES:
        first = next((directory / table).glob("day=*/model=*/*.parquet"), None)
        if first is None:
            continue
        meta = pq.read_schema(first).metadata or {}
        version = meta.get(b"auditor.schema_version", b"?").decode()
        if version != SCHEMA_VERSION:
            raise UsageError(
                f"--output: {directory} holds an export of schema version {version}; this "
                f"auditor writes version {SCHEMA_VERSION}: export into a new directory"
            )


def export_parquet(store: Store, filters: Filters, directory: Path) -> ExportSummary:
    """Write the selected rounds' samples, findings, tests and diagnoses under `directory`,
    one day at a time; each day's partitions of the selected models replace the ones there.
    Bad filters raise `UsageError` before anything is written."""
    check_directory(directory)
    selection = select_rounds(store, filters)
    summary = ExportSummary()
    for day, rounds in selection.days().items():
        _export_day(store.engine, selection, day, rounds, directory, summary)
        summary.days.append(day)
    return summary


def _export_day(
    engine: Engine,
    selection: Selection,
    day: date,
    rounds: list[RoundInfo],
    directory: Path,
    summary: ExportSummary,
) -> None:
    staged: dict[Path, Path] = {}  # final path -> temporary file beside it
    try:
        for model in selection.models():
            endpoints = selection.endpoints_of(model)
            target, batches = sample_batches(engine, rounds, endpoints)
            final = partition_dir(directory, "samples", day, model) / PART
            summary.rows["samples"] += _write(final, target, batches, staged)
            for table, batch in finding_batches(engine, rounds, endpoints).items():
                if batch.num_rows:
                    final = partition_dir(directory, table, day, model) / PART
                    summary.rows[table] += _write(final, batch.schema, iter([batch]), staged)
        _commit(directory, day, selection.models(), staged, summary)
    finally:
        for temporary in staged.values():
            temporary.unlink(missing_ok=True)


def _write(
    final: Path, target: pa.Schema, batches: Iterable[pa.RecordBatch], staged: dict[Path, Path]
) -> int:
    """Write the batches to a hidden temporary file beside `final`; stage it if it has rows."""
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    writer = PartWriter(temporary, target)
    try:
        for batch in batches:
            writer.write(batch)
    finally:
        writer.close()
    if not writer.rows:
        temporary.unlink(missing_ok=True)
        return 0
    staged[final] = temporary
    return writer.rows


def _commit(
    directory: Path, day: date, models: list[str], staged: dict[Path, Path], summary: ExportSummary
) -> None:
    """Move the day's new files into place; remove the day's other files of these models
    (and temporary files a killed export left)."""
    written = set()
    for final, temporary in staged.items():
        summary.replaced += final.exists()
        os.replace(temporary, final)
        written.add(final)
        summary.files += 1
        summary.bytes += final.stat().st_size
    staged.clear()
    in_scope = set(models)
    for table in TABLES:
        day_dir = directory / table / f"day={day.isoformat()}"
        if not day_dir.is_dir():
            continue
        for part in day_dir.glob("model=*"):
            if unquote(part.name.removeprefix("model=")) not in in_scope:
                continue
            for old in part.iterdir():
                stale = old.suffix == ".parquet" or old.name.endswith(".tmp")
                if stale and old not in written and old.is_file():
                    old.unlink()
                    summary.removed += old.suffix == ".parquet"
            _rmdir_if_empty(part)
        _rmdir_if_empty(day_dir)


def _rmdir_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):  # not empty: other files, other models
        path.rmdir()


def write_round_samples(store: Store, round_id: str, sink: str | Path | IO[bytes]) -> int:
    """A round's samples, every endpoint's, with their scores pivoted, as one Parquet file
    (the samples table's schema); the number of rows. An unknown round raises `UsageError`."""
    selection = select_rounds(store, Filters(rounds=(round_id,)))
    endpoints = sorted(selection.endpoints.values(), key=lambda e: e.id)
    target, batches = sample_batches(store.engine, selection.rounds, endpoints)
    writer = PartWriter(sink, target)
    try:
        for batch in batches:
            writer.write(batch)
    finally:
        writer.close()
    return writer.rows
