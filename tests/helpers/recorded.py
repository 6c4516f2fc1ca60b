"""Recorded fleet rounds (`tests/fixtures/fleet_rounds/*.json.gz`, written by
`tests/fixtures/record_fleet_rounds.py`): real rounds of the packaged model against a fleet
planted with every fault, read back as observations, so the comparisons and rules can be run
on them without a live fleet."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from auditor.comparisons.observation import Observation
from auditor.judging.findings import ProviderRecord, assess
from auditor.judging.verdict import VerdictPolicy
from auditor.records import Finding

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "fleet_rounds"
MODEL = "smollm2-135m-instruct"


@dataclass
class RecordedEndpoint:
    name: str
    kind: str
    fault: str | None
    strength: float | None
    requests: int | None
    errors: int | None
    observations: list[Observation] = field(default_factory=list)


@dataclass
class RecordedRound:
    suite: str
    looks: int
    endpoints: dict[str, RecordedEndpoint]

    @property
    def reference(self) -> list[Observation]:
        return self.endpoints["reference"].observations

    def providers(self) -> list[RecordedEndpoint]:
        return [e for e in self.endpoints.values() if e.kind == "provider"]

    def judge(self, name: str, trusted: bool = True) -> Finding:
        """The provider's finding as `build_findings` reaches it; with `trusted`, the other
        members marked trusted in the round are its trusted peers."""
        e = self.endpoints[name]
        peers = [
            o
            for other in self.providers()
            if trusted and other.name != name
            for o in other.observations
            if o.trusted
        ]
        record = ProviderRecord(MODEL, name, e.requests or 0, e.errors or 0, 0)
        policy = VerdictPolicy(looks=self.looks)
        return assess(
            record, "reference", self.reference, e.observations, peers, policy, {},
            seed=f"recorded/{self.suite}/{name}",
        )  # fmt: skip


@cache
def recorded_rounds() -> tuple[RecordedRound, ...]:
    return tuple(load_round(p) for p in sorted(FIXTURES.glob("*.json.gz")))


def load_round(path: Path) -> RecordedRound:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        data = json.load(f)
    cases = data["cases"]
    endpoints = {}
    for e in data["endpoints"]:
        observations = [Observation(**o, case=cases[o["probe_hash"]]) for o in e["observations"]]
        endpoints[e["name"]] = RecordedEndpoint(
            name=e["name"], kind=e["kind"], fault=e["fault"], strength=e["strength"],
            requests=e["requests"], errors=e["errors"], observations=observations,
        )  # fmt: skip
    return RecordedRound(data["suite"], data["looks"], endpoints)
