"""The ladder climbed rung by rung: a provider stops after two failing rungs in a row, the
reference climbs while any provider does, the rest of the suite goes through the wrapped
policy; and a real round against a real echo fleet, whose member with a shorter context is
sent no rung above the second it refuses."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest
from auditor_fleet import FleetMember, FleetSpec
from auditor_fleet.process import running_fleet

from auditor.config import AuditorConfig
from auditor.judging.findings import build_findings
from auditor.probes import load_suite
from auditor.records import Message, ProbeCase, RequestParams
from auditor.rounds.budget import EndpointKey, Plan, SendEverySample
from auditor.rounds.climb import LadderClimb, rungs_of, stops_climbing
from auditor.rounds.run import run_round_async, select
from auditor.stats.ladder import RungStatus
from auditor.storage.db import ensure_schema, make_engine
from auditor.storage.observations import load_observations, round_endpoints
from auditor.storage.repository import Store

ROOT = Path(__file__).resolve().parents[2]
MODEL = "m"
TARGETS = (256, 512, 1024, 2048)


@pytest.mark.parametrize(
    ("statuses", "stops"),
    [
        ([], False),
        (["fail"], False),
        (["match", "fail", "fail"], True),
        (["fail", "unknown", "fail"], True),  # an unknown rung neither counts nor resets
        (["fail", "match", "fail"], False),
        (["fail", "fail", "match"], False),
    ],
)
def test_two_judged_failing_rungs_in_a_row_stop_the_climb(
    statuses: list[RungStatus], stops: bool
) -> None:
    assert stops_climbing(statuses) is stops


def case(probe_id: str, target: int | None = None) -> ProbeCase:
    metadata = {"generator": "context_ladder", "target_tokens": target} if target else {}
    return ProbeCase(
        id=probe_id,
        suite="s",
        messages=[Message(role="user", content=probe_id)],
        params=RequestParams(temperature=0, max_tokens=8),
        samples=2,
        metadata=metadata,
    )


async def climb(truth: dict[str, list[RungStatus]]) -> dict[EndpointKey, list[str]]:
    """Drive the policy as the runner does; each provider's rung verdicts are `truth` for
    the rungs it was sent. What each endpoint was sent, in order."""
    ladder = [case(f"ladder.{t}.{task}", t) for t in reversed(TARGETS) for task in "ab"]
    other = case("hello")
    providers = [(MODEL, name) for name in truth]
    endpoints = [*providers, (MODEL, "reference")]
    sent: dict[EndpointKey, list[str]] = defaultdict(list)

    async def rungs() -> dict[EndpointKey, list[RungStatus]]:
        climbed = {k: {p.split(".")[1] for p in sent[k] if p.startswith("ladder")} for k in sent}
        return {k: truth[k[1]][: len(climbed[k])] for k in providers}

    policy = LadderClimb(
        SendEverySample(Plan.samples(endpoints, [other])),
        {MODEL: rungs_of([other, *ladder])},
        providers=providers,
        references={MODEL: "reference"},
        rungs=rungs,
    )
    while len(plan := await policy.next_requests()):
        for planned in plan:
            sent[(planned.model, planned.endpoint)].append(planned.request.probe_id)
    return sent


def rungs_sent(probe_ids: list[str]) -> list[int]:
    return list(dict.fromkeys(int(p.split(".")[1]) for p in probe_ids if p.startswith("ladder")))


async def test_a_provider_failing_two_rungs_climbs_no_higher() -> None:
    sent = await climb(
        {
            "honest": ["match"] * 4,
            "cut": ["match", "fail", "fail", "fail"],
            "flaky": ["fail", "match", "fail", "match"],
        }
    )
    assert rungs_sent(sent[(MODEL, "honest")]) == list(TARGETS), "shortest first, all of them"
    assert rungs_sent(sent[(MODEL, "cut")]) == list(TARGETS[:3])
    assert rungs_sent(sent[(MODEL, "flaky")]) == list(TARGETS), "never two in a row"
    assert rungs_sent(sent[(MODEL, "reference")]) == list(TARGETS)
    for probe_ids in sent.values():  # the rest of the suite, first, and every sample of a rung
        assert probe_ids[:2] == ["hello", "hello"]
        assert len(probe_ids) == 2 + 2 * 2 * len(rungs_sent(probe_ids))


async def test_the_reference_stops_when_every_provider_has() -> None:
    sent = await climb({"cut": ["fail", "fail", "fail", "fail"]})
    assert rungs_sent(sent[(MODEL, "cut")]) == list(TARGETS[:2])
    assert rungs_sent(sent[(MODEL, "reference")]) == list(TARGETS[:2])


@pytest.mark.slow  # a whole round: its writer process, a real fleet of HTTP servers
async def test_a_round_stops_climbing_a_provider_with_a_shorter_context(tmp_path: Path) -> None:
    limit = 1024  # the echo backend counts a prompt as its words + 4 a message
    members = [
        FleetMember(name="ref", port=0),
        FleetMember(name="honest", port=0),
        FleetMember(name="short", port=0, fault="context_limit", strength=limit),
    ]
    probes = tmp_path / "probes"
    probes.mkdir()
    (probes / "ladder.yaml").write_text((ROOT / "probes" / "ladder.yaml").read_text())
    database = f"sqlite:///{tmp_path / 'a.db'}"
    with running_fleet(FleetSpec(members=members, seed=3)) as fleet:
        cfg = AuditorConfig.model_validate(
            {
                "database": database,
                "reference": {"engine": "endpoint", "base_url": fleet.base_url("ref"),
                              "model": MODEL},
                "suites": ["ladder"],
                "probes_dir": str(probes),
                "budget": {"sequential": {"looks": 3, "extra_samples": 1}},
                "models": [{
                    "name": MODEL,
                    "profile": {"context_window": 4096},
                    "providers": [
                        {"name": n, "base_url": fleet.base_url(n), "model": MODEL}
                        for n in ("honest", "short")
                    ],
                }],
            }
        )  # fmt: skip
        store = Store(make_engine(database))
        ensure_schema(store.engine)
        selection = select(cfg, load_suite("ladder", probes), None, None)
        result = await run_round_async(cfg, store, selection, score_likelihood=False)
    assert result.outcome.status == "complete"
    ids = {e.name: e.provider_id for e in round_endpoints(store, result.round_id)}
    targets = {}
    for name, provider_id in ids.items():
        observations = load_observations(store, result.round_id, [provider_id])
        targets[name] = sorted({o.case["metadata"]["target_tokens"] for o in observations})
    ladder = sorted({c.metadata["target_tokens"] for c in selection.cases[MODEL]})
    assert targets["honest"] == targets["reference"] == ladder, "no extra looks on the ladder"
    findings = {f.provider: f for f in build_findings(store, result.round_id)[0]}
    window = findings["short"].context_window
    assert window is not None and window.reason == "refused"
    failing = [r.length for r in window.rungs if r.status == "fail"]
    first = next(i for i, r in enumerate(window.rungs) if r.status == "fail")
    assert len(failing) == 2 and len(targets["short"]) == first + 2 < len(ladder)
    assert window.breaks_at == failing[0] and window.effective == window.rungs[first - 1].length
    assert window.effective is not None and window.effective <= limit < failing[0]
    honest = findings["honest"].context_window
    assert honest is not None and honest.breaks_at is None
    assert window.requests < honest.requests == sum(c.samples for c in selection.cases[MODEL])
