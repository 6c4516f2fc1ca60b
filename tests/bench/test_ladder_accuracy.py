"""`bench/ladder_accuracy.py`: every context fault's length drawn from its range, the same
fleet for a seed, a fleet context that holds the whole ladder, and errors counted in rungs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    path = ROOT / "bench" / "ladder_accuracy.py"
    spec = importlib.util.spec_from_file_location("ladder_accuracy", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "ladder_accuracy", module)
    spec.loader.exec_module(module)
    return module


def test_each_start_draws_its_own_cuts_within_the_ranges(bench: ModuleType) -> None:
    drawn = [bench.draw(seed, 8801) for seed in range(20)]
    for spec, planted in drawn:
        faults = sorted(p["fault"] for p in planted.values())
        assert faults.count("honest") == bench.HONEST
        assert faults.count("truncate_context") == bench.CUTS
        assert faults.count("context_limit") == 1
        for p in planted.values():
            if p["fault"] != "honest":
                low, high = bench.RANGES[f"{p['fault']}.tokens"]
                assert low <= p["strength"] <= high
        assert spec.n_ctx == bench.FLEET_N_CTX > bench.WINDOW
        assert {m.name: m.fault for m in spec.members} == {
            n: p["fault"] for n, p in planted.items()
        }
    assert bench.draw(7, 8801)[1] == drawn[7][1], "a start is its seed"
    cuts = {p["strength"] for _, planted in drawn for p in planted.values() if "strength" in p}
    assert len(cuts) > 40, "lengths drawn, not fixed"
    billed = {
        p["usage_as_sent"]
        for _, planted in drawn
        for p in planted.values()
        if p["fault"] == "truncate_context"
    }
    assert billed == {True, False}


def test_errors_are_counted_in_rungs(bench: ModuleType) -> None:
    lengths = [146, 235, 446, 844, 1255, 1563]
    assert bench.rung_of(None, lengths) == -1
    assert bench.rung_of(844, lengths) == 3
    rows = [
        {"fault": "context_limit", "error": e, "verdict": v, "requests": 36, "tokens": 9000}
        for e, v in ((0, "deviant"), (1, "deviant"), (-2, "consistent"))
    ]
    summary = bench.summarise(rows)["context_limit"]
    assert summary["members"] == 3
    assert summary["exact"] == pytest.approx(1 / 3, abs=1e-3)
    assert summary["within_one_rung"] == pytest.approx(2 / 3, abs=1e-3)
    assert summary["mean_abs_error_rungs"] == 1.0
    assert summary["errors"] == {"-2": 1, "0": 1, "1": 1}


@pytest.mark.slow
def test_the_truth_counts_a_prompt_as_the_truncating_member_does(bench: ModuleType) -> None:
    """A `truncate_context` member keeps the last N tokens of the messages' text, the chat
    template's on top: at N = `text_tokens` it cuts nothing, one token less and it cuts, and
    the whole prompt (what `context_limit` and the reference count) is longer."""
    from auditor_fleet.backends import ChatMessage, ChatRequest
    from auditor_fleet.llama_backend import LlamaBackend

    text = "Answer from the text below.\n" + "The code of the purple door is 9499. " * 40
    n = bench.text_tokens([{"role": "user", "content": text}])
    messages = [ChatMessage(role="user", content=text)]
    backend = LlamaBackend()
    assert backend.truncate(messages, n) == messages
    assert backend.truncate(messages, n - 1)[0].content != text
    whole = backend.count_prompt(ChatRequest(model="m", messages=messages))
    assert whole > n
