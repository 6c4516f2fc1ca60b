"""`bench/detection.py --flavour reasoning` draws the reasoning flavour's fleets at random and
tells the detector nothing that was planted; a recorded start is judged whole (both rounds)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def flavour(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    load("detection", monkeypatch)
    return load("detection_reasoning", monkeypatch)


def test_each_start_draws_every_fault_once_beside_the_honest_members(flavour: ModuleType) -> None:
    spec, planted = flavour.draw_fleet(3)
    faults = Counter(p["fault"] for p in planted.values())
    honest = flavour.THINKING_HONEST + flavour.PLAIN_HONEST
    assert faults == Counter(
        {"honest": honest, **{f: 1 for f in flavour.THINKING_FAULTS + flavour.PLAIN_FAULTS}}
    )
    assert [m.name for m in spec.members] == [f"p{i + 1:02d}" for i in range(len(planted))]
    low, high = flavour.RANGES["noise"]
    for member in spec.members:
        assert low <= member.noise <= high
        thinking = member.fault in flavour.THINKING_FAULTS or member.reasoning is not None
        assert (member.models[0] == "smollm2-135m-thinking") == thinking
        if f"{member.fault}.fraction" in flavour.RANGES:
            a, b = flavour.RANGES[f"{member.fault}.fraction"]
            assert a <= member.strength <= b


def test_draws_are_fixed_by_the_seed_and_differ_between_seeds(flavour: ModuleType) -> None:
    assert flavour.draw_fleet(5)[1] == flavour.draw_fleet(5)[1]
    assert flavour.draw_fleet(5)[1] != flavour.draw_fleet(6)[1]
    faults = {tuple(p["fault"] for p in flavour.draw_fleet(s)[1].values()) for s in range(6)}
    assert len(faults) > 1  # the order is shuffled per start


def test_the_config_holds_nothing_that_was_planted(flavour: ModuleType) -> None:
    spec, planted = flavour.draw_fleet(11)
    config = flavour.config(spec, "sqlite:////tmp/never-opened.db")
    text = config.model_dump_json()
    for params in planted.values():
        assert params["fault"] not in text
        assert str(params["noise"]) not in text
    providers = {p.name: p for m in config.models for p in m.providers}
    assert set(providers) == set(planted)
    for name, params in planted.items():
        routed = params.get("router") or params["fault"] == "router_fallback"
        assert ("provider" in providers[name].params) == bool(routed)
    thinking = next(m for m in config.models if m.name == "smollm2-135m-thinking")
    assert thinking.profile is not None and thinking.profile.reasoning is not None
    assert {p.name for p in thinking.providers} == {
        n for n, p in planted.items() if p.get("models") == ["smollm2-135m-thinking"]
    }


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["record", "--flavour", "reasoning", "--seeds", "0", "--peer"],
         "--peer and --replay are the standard flavour's"),
        (["judge", "--flavour", "ladder", "--tuning", "1", "--reporting", "200"],
         "--tuning: the ladder's starts are all reporting starts"),
        (["judge", "--flavour", "reasoning", "--tolerance", "0.5"],
         "--tolerance is the standard flavour's"),
    ],
)  # fmt: skip
def test_flags_of_another_flavour_are_refused_in_one_line(
    args: list[str], line: str, tmp_path: Path
) -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "detection.py"), *args, "--work", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 2
    assert run.stderr.splitlines()[-1].endswith(line)
    assert "Traceback" not in run.stderr


def test_a_recorded_start_is_judged_on_both_rounds(flavour: ModuleType, tmp_path: Path) -> None:
    seeds = sorted(
        int(p.name.split("-")[1].split(".")[0])
        for p in (ROOT / "bench" / "recorded").glob("reasoning-*.json")
    )
    if not seeds:
        pytest.skip("no reasoning start recorded")
    assert flavour.restore(seeds[0], tmp_path, "reasoning")
    meta = json.loads((tmp_path / f"reasoning-{seeds[0]}.json").read_text())
    outcomes = flavour.judge_start(tmp_path / f"reasoning-{seeds[0]}.db")
    assert set(outcomes) == set(meta["planted"])
    for outcome in outcomes.values():
        assert outcome.requests > 0
        assert outcome.finding.verdict in ("consistent", "deviant", "inconclusive")
