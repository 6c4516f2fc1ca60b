"""Fixtures of the alert tests: a real receiver (up or down), a SQLite store, the secret."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from helpers.db import new_store

from auditor.storage.repository import Store
from tests.alerts.receiver import NEW_SECRET, OLD_SECRET, Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A receiver knowing both secrets, already listening."""
    r = Receiver([NEW_SECRET, OLD_SECRET]).start()
    yield r
    r.stop()


@pytest.fixture
def down_receiver() -> Iterator[Receiver]:
    """A receiver that is down until the test calls `start()`."""
    r = Receiver([NEW_SECRET, OLD_SECRET])
    yield r
    r.stop()


@pytest.fixture
def store(sqlite_url: str) -> Store:
    return new_store(sqlite_url)


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("HOOK_SECRET", NEW_SECRET)
    return "HOOK_SECRET"
