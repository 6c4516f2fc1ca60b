"""`bench/detection.py` keeps each recorded start in the repo and brings it back for judging:
the restored database must be the recorded one, row for row."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def detection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location("detection", ROOT / "bench" / "detection.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "detection", module)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "RECORDED", tmp_path / "recorded")
    return module


def a_start(work: Path, seed: int, rows: int) -> None:
    work.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(work / f"start-{seed}.db") as conn:
        conn.execute("CREATE TABLE samples (id INTEGER PRIMARY KEY, text TEXT)")
        conn.executemany(
            "INSERT INTO samples (text) VALUES (?)", [(f"answer {i}",) for i in range(rows)]
        )
        conn.execute("DELETE FROM samples WHERE id % 2 = 0")  # free pages, for VACUUM to drop
    (work / f"start-{seed}.json").write_text(json.dumps({"seed": seed, "planted": {"p01": {}}}))


def texts(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [t for (t,) in conn.execute("SELECT text FROM samples ORDER BY id")]


def test_a_start_archived_comes_back_row_for_row_on_another_machine(
    detection: ModuleType, tmp_path: Path
) -> None:
    recorder, judge = tmp_path / "recorder", tmp_path / "judge"
    a_start(recorder, 7, rows=2000)
    detection.archive(7, recorder)
    packed = detection.RECORDED / "start-7.db.xz"
    assert packed.stat().st_size < (recorder / "start-7.db").stat().st_size / 3
    assert detection.restore(7, judge) is True
    assert texts(judge / "start-7.db") == texts(recorder / "start-7.db")
    assert len(texts(judge / "start-7.db")) == 1000
    meta = json.loads((judge / "start-7.json").read_text())
    assert meta["planted"] == {"p01": {}}
    assert not list(judge.glob("*.part"))


def test_a_start_under_work_is_never_overwritten_and_an_unknown_one_is_not_made_up(
    detection: ModuleType, tmp_path: Path
) -> None:
    recorder, work = tmp_path / "recorder", tmp_path / "work"
    a_start(recorder, 7, rows=10)
    detection.archive(7, recorder)
    a_start(work, 7, rows=4)  # recorded here, later than the archive
    assert detection.restore(7, work) is True
    assert len(texts(work / "start-7.db")) == 2
    assert detection.restore(8, work) is False
    assert not (work / "start-8.db").exists()
