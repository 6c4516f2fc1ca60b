"""The pieces of `auditor demo` and one small demo end to end (echo fleet: no model needed)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import get_args

import pytest
import yaml
from auditor_fleet import FleetMember, FleetSpec, default_fleet, echo_fleet, pick_members
from auditor_fleet.demo import (
    EXPECTED,
    REASONING_ROUNDS,
    THINKING_MODEL,
    planted,
    providers_yaml,
    reasoning_fleet,
    reasoning_providers_yaml,
)
from auditor_fleet.spec import DEMO_MEMBERS, FAULT_STRENGTH, Fault
from helpers.cli import assert_one_line_error, free_port_range, run_auditor

from auditor.comparisons.rules import kinds
from auditor.config import load_config
from auditor.errors import UsageError

KINDS = set(kinds.names())


def test_every_fault_has_an_expected_diagnosis_of_a_contract_kind() -> None:
    assert set(EXPECTED) == set(get_args(Fault))
    for verdict, kind in EXPECTED.values():
        assert verdict in ("consistent", "deviant", "unavailable")
        assert kind is None or kind in KINDS
    for fault, (meaning, default) in FAULT_STRENGTH.items():
        assert fault in EXPECTED and meaning and default > 0


def test_the_demo_fleet_has_two_honest_members_and_one_per_model_fault() -> None:
    spec = default_fleet()
    faults = [m.fault for m in spec.members]
    assert faults.count("honest") == 2
    assert set(faults) == {
        "honest",
        "sampling_override",
        "truncate_context",
        "persona",
        "quantized",
        "wrong_template",
        "max_tokens_cap",
        "drop_system",
        "variant_mix",
        "flaky",
    }
    assert [m.port for m in spec.members] == list(range(8101, 8101 + len(DEMO_MEMBERS)))


NEW_FAULTS = {
    "reasoning_leak": ("deviant", "reasoning"),
    "effort_ignored": ("deviant", "reasoning"),
    "drop_response_format": ("deviant", "other"),
    "ignore_seed": ("deviant", "sampling_params"),
    "stream_tools_differ": ("deviant", "tool_calling"),
    "router_fallback": ("deviant", "other"),
}


def test_the_reasoning_fleet_has_each_new_fault_once_and_honest_reasoners() -> None:
    spec = reasoning_fleet("127.0.0.2", 9200)
    assert FleetSpec.model_validate(spec.model_dump()) == spec
    assert spec.host == "127.0.0.2"
    assert [m.port for m in spec.members] == list(range(9200, 9200 + len(spec.members)))
    faults = [m.fault for m in spec.members]
    assert sorted(f for f in faults if f != "honest") == sorted(NEW_FAULTS)
    assert {f: EXPECTED[f] for f in NEW_FAULTS} == NEW_FAULTS
    honest = [m for m in spec.members if m.fault == "honest"]
    assert sorted((m.reasoning or "", m.router) for m in honest) == [
        ("", True),  # the honest router, on the plain model
        ("reasoning", False),
        ("reasoning_content", False),
    ]
    # the reasoning faults and their honest twins serve the emulated reasoning model; the
    # parameter, streaming and router faults the plain one, each model audited on its suite
    thinking = {m.name for m in spec.members if m.models == [THINKING_MODEL]}
    assert thinking == {m.name for m in spec.members if m.reasoning}
    assert {m.fault for m in spec.members if m.name in thinking} == {
        "honest", "reasoning_leak", "effort_ignored"
    }  # fmt: skip
    assert [suite for _, suite in REASONING_ROUNDS] == ["demo-reasoning", "demo-params"]
    assert all(m.backend == "llama" for m in spec.members)
    assert all(m.noise == default_fleet().members[0].noise for m in spec.members)
    for m in spec.members:  # neutral names: nothing of the fault in them
        assert not any(w in m.name for w in [*m.fault.split("_"), "rout", "reason", "think"])


def test_pick_members() -> None:
    spec = default_fleet()
    picked = pick_members(spec, ["acme", "persona=0.5", "quantized"])
    assert [(m.name, m.fault, m.strength) for m in picked.members] == [
        ("acme", "honest", 0.0),
        ("ember", "persona", 0.5),
        ("fjord", "quantized", 2.0),
    ]
    assert [m.name for m in pick_members(spec, ["honest"]).members] == ["acme", "bolt"]
    added = pick_members(spec, ["inject_system"]).members
    assert [(m.name, m.port, m.backend) for m in added] == [("inject-system", 8112, "llama")]
    with pytest.raises(UsageError, match="neither a member"):
        pick_members(spec, ["nobody"])
    with pytest.raises(UsageError, match="<= 1"):
        pick_members(spec, ["persona=3"])
    with pytest.raises(UsageError, match="needs a model backend"):
        pick_members(echo_fleet(), ["quantized"])
    with pytest.raises(ValueError, match="model backend"):
        FleetMember(name="q", port=1, fault="wrong_template")


def test_generated_providers_file_matches_the_fleet(tmp_path: Path) -> None:
    spec = default_fleet(9100)
    path = tmp_path / "demo-providers.yaml"
    path.write_text(providers_yaml(spec))
    config = load_config(path)
    assert config.suites == ["demo"]
    providers = config.models[0].providers
    assert [p.base_url for p in providers] == [f"http://127.0.0.1:{9100 + i}/v1" for i in range(11)]
    members = planted(spec, providers)
    assert {name: m.fault for name, m in members.items()} == {m.name: m.fault for m in spec.members}


def test_repo_providers_file_lists_the_demo_fleet() -> None:
    root = Path(__file__).resolve().parents[2]
    config = load_config(root / "providers.yaml")
    assert config.suites == ["demo"]
    members = planted(default_fleet(), config.models[0].providers)
    assert sorted(m.name for m in members.values()) == sorted(
        m.name for m in default_fleet().members
    )


@pytest.mark.slow
def test_demo_end_to_end_on_the_echo_fleet(tmp_path: Path) -> None:
    base = free_port_range(3)
    (tmp_path / "probes").mkdir()
    suite = {
        "suite": "demo",
        "defaults": {"params": {"temperature": 0, "max_tokens": 8}},
        "cases": [
            {"id": "hi", "prompt": "Say hi.", "samples": 3},
            {"id": "sum", "prompt": "What is 2 + 2? Answer with one number."},
        ],
    }
    (tmp_path / "probes" / "demo.yaml").write_text(yaml.safe_dump(suite))
    spec = pick_members(echo_fleet(base), ["acme", "flaky"])
    config = yaml.safe_load(providers_yaml(spec, f"sqlite:///{tmp_path / 'demo.db'}"))
    config["reference"] = None
    (tmp_path / "providers.yaml").write_text(yaml.safe_dump(config))

    result = run_auditor(
        "demo",
        "--echo",
        "--faults",
        "acme,flaky",
        "--base-port",
        str(base),
        "--state-dir",
        str(tmp_path / "fleet"),
        "--no-progress",
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "starting the demo fleet (2 members)" in result.stderr
    table = result.stdout[result.stdout.index("planted faults and findings") :]
    rows = {line.split()[1]: line for line in table.splitlines() if line.startswith("│")}
    assert "honest" in rows["acme"] and "flaky (0.3)" in rows["flaky"]
    assert "4" in rows["acme"].split("│")[6]  # requests
    assert (tmp_path / "demo.db").exists()
    assert not (tmp_path / "fleet" / "fleet.json").exists()  # the demo stopped its fleet


def test_the_reasoning_providers_file_audits_each_model_as_its_members_serve_it() -> None:
    config_text = reasoning_providers_yaml(reasoning_fleet("127.0.0.1", 9300))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "providers.yaml"
        path.write_text(config_text, encoding="utf-8")
        config = load_config(path)
    thinking, plain = config.models
    assert thinking.name == THINKING_MODEL and thinking.profile.reasoning is not None
    assert thinking.reference not in (None, "default")
    assert thinking.reference.emulate_reasoning is not None  # type: ignore[union-attr]
    assert plain.reference == "default" and plain.profile.reasoning is None
    pinned = {p.name for p in plain.providers if p.params.get("provider")}
    assert pinned == {"verona", "yuzu"}  # the routers, each pinned to one upstream
    assert {p.name for p in thinking.providers} == {"lisbon", "oslo", "quince", "rambutan"}


def test_the_reasoning_flavour_refuses_the_echo_fleet_in_one_line(tmp_path: Path) -> None:
    result = run_auditor("demo", "--flavour", "reasoning", "--echo", cwd=tmp_path)
    assert_one_line_error(result, "--echo: the reasoning flavour needs the model")
    result = run_auditor("demo", "--flavour", "spicy", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "spicy" in result.stderr
