"""The pieces of `auditor demo` and one small demo end to end (echo fleet: no model needed)."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest
import yaml
from auditor_fleet import FleetMember, default_fleet, echo_fleet, pick_members
from auditor_fleet.demo import EXPECTED, planted, providers_yaml
from auditor_fleet.spec import DEMO_MEMBERS, FAULT_STRENGTH, Fault
from helpers.cli import free_port_range, run_auditor

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
