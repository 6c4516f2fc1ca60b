"""`bench/persona_tuning.py`'s fleet: every hidden persona of the detection bench, billed as
if absent, beside variant and Q2_K mixes and honest members; the same fleet for a seed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def tuning(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    path = ROOT / "bench" / "persona_tuning.py"
    spec = importlib.util.spec_from_file_location("persona_tuning", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "persona_tuning", module)
    spec.loader.exec_module(module)
    return module


def test_every_persona_hidden_beside_the_mixes_it_must_be_told_from(tuning: ModuleType) -> None:
    spec, planted = tuning.tuning_fleet(900, 8701)
    faults = sorted(p["fault"] for p in planted.values())
    personas = [p for p in planted.values() if p["fault"] == "persona"]
    assert sorted(p["persona_text"] for p in personas) == sorted(tuning.detection.PERSONAS)
    assert all(p["usage_as_sent"] is True for p in personas)
    assert faults.count("honest") == 3
    assert faults.count("variant_mix") == len(tuning.VARIANT_SHARES)
    assert faults.count("quantized_mix") == len(tuning.QUANTIZED_SHARES)
    low, high = tuning.detection.RANGES["noise"]
    assert all(low <= p["noise"] <= high for p in planted.values())
    assert [m.port for m in spec.members] == list(range(8701, 8701 + len(planted)))
    assert {m.name: m.fault for m in spec.members} == {n: p["fault"] for n, p in planted.items()}


def test_a_seed_is_one_fleet(tuning: ModuleType) -> None:
    assert tuning.tuning_fleet(900, 8701)[1] == tuning.tuning_fleet(900, 8701)[1]
    assert tuning.tuning_fleet(900, 8701)[1] != tuning.tuning_fleet(901, 8701)[1]
