"""What several queries share: the tables' Core aliases and small conversions of stored
values into view fields."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from auditor.records import Diagnosis, as_utc
from auditor.storage.tables import FindingRow, ProviderRow, RoundRow, SampleRow, core_table

INCIDENTS_SHOWN = 100

F = core_table(FindingRow)
R = core_table(RoundRow)
P = core_table(ProviderRow)
S = core_table(SampleRow)


def _diagnoses(value: list[dict[str, Any]] | None) -> list[Diagnosis]:
    return [Diagnosis.model_validate(d) for d in value or []]


def _at(value: datetime | None) -> datetime | None:
    return as_utc(value) if value is not None else None
