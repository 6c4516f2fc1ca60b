"""What the judging layer reads of a stored round besides its samples: how many looks its
budget allowed, which sets the level its verdict, and its ladder's rungs, are read at."""

from __future__ import annotations

from typing import Any

import pytest
from helpers.db import new_store

from auditor.storage.observations import round_looks
from auditor.storage.tables import RoundRow


@pytest.mark.parametrize(
    ("budget", "looks"),
    [
        (None, 1),
        ({"max_requests": 100}, 1),
        ({"sequential": {"looks": 3, "extra_samples": 1}}, 3),
    ],
)
def test_a_rounds_looks_come_from_its_recorded_budget(
    sqlite_url: str, budget: dict[str, Any] | None, looks: int
) -> None:
    store = new_store(sqlite_url)
    store.start_round(
        RoundRow(id="r", suite="s", suite_hash="h", auditor_version="t", budget=budget)
    )
    assert round_looks(store, "r") == looks
    assert round_looks(store, "no such round") == 1
