"""Samples, their scores and findings -> Parquet, for researchers (docs/research.md).

An export directory (`auditor export --format parquet -o DIR`) holds four tables, each a
directory of Hive-style partitions by day and model:

    DIR/samples/day=2026-12-04/model=smollm2-135m-instruct/part-0.parquet
    DIR/findings/day=.../model=.../part-0.parquet
    DIR/tests/...       one row per finding x test
    DIR/diagnoses/...   one row per finding x diagnosis

`schema.py` has the columns, `rows.py` reads them from the database in chunks, `files.py`
writes the directory (or one round's samples as one file).
"""

from auditor.report.parquet.files import ExportSummary, export_parquet, write_round_samples
from auditor.report.parquet.schema import MEDIA_TYPE, SCHEMA_VERSION, TABLES, schema

__all__ = [
    "MEDIA_TYPE",
    "SCHEMA_VERSION",
    "TABLES",
    "ExportSummary",
    "export_parquet",
    "schema",
    "write_round_samples",
]
