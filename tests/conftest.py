"""Shared fixtures: real databases (a SQLite file and the PostgreSQL server on loopback) and a
warm process forking `auditor` commands."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.db import postgres_database
from helpers.zygote import Zygote


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'auditor.db'}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database per test, dropped afterwards."""
    with postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs on both databases, for real."""
    fixture = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return request.getfixturevalue(fixture)


@pytest.fixture(scope="module")
def zygote() -> Iterator[Zygote]:
    """Forks `auditor` commands without the console script's seconds of imports."""
    z = Zygote()
    yield z
    z.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that loads the real model is slow wherever it is: `-m "not slow"` skips it."""
    for item in items:
        if item.get_closest_marker("model") and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)
