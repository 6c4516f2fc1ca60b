"""Budget policies: the sequential policy asks in looks and stops asking settled providers."""

from __future__ import annotations

from pathlib import Path

from helpers.rounds import CASE, Scripted, endpoint, make_store

from auditor.config import RoundBudget, Sequential
from auditor.records import CompletionRequest, Message, ProbeCase
from auditor.rounds.budget import (
    EndpointKey,
    Evidence,
    Plan,
    PlannedRequest,
    SequentialPolicy,
    SpendMeter,
)
from auditor.rounds.runner import RoundRunner
from auditor.secrets import Redactor

GREEDY = ProbeCase(id="g", suite="s", messages=[Message(role="user", content="a")])
SAMPLED = ProbeCase(
    id="s",
    suite="s",
    messages=[Message(role="user", content="b")],
    samples=3,
    signals=["sampling"],
)
PROVIDERS: list[EndpointKey] = [("m", "deviant"), ("m", "honest"), ("m", "doubt")]


def plan() -> Plan:
    return Plan.of(
        PlannedRequest("m", name, CompletionRequest.from_case(case, k))
        for case in (GREEDY, SAMPLED)
        for k in range(case.samples)
        for name in ("deviant", "honest", "doubt", "reference")
    )


def policy(
    p_values: list[dict[EndpointKey, float | None]],
    looks: int = 3,
    smallest: dict[EndpointKey, float] | None = None,
) -> SequentialPolicy:
    answers = iter(p_values)

    async def judge() -> dict[EndpointKey, Evidence]:
        return {k: Evidence(p, (smallest or {}).get(k, p)) for k, p in next(answers).items()}

    return SequentialPolicy(
        plan(),
        {"m": [SAMPLED]},
        PROVIDERS,
        {"m": "reference"},
        judge,
        Sequential(looks=looks, extra_samples=2),
        alpha=0.05,
    )


async def test_settled_providers_get_no_more_requests_and_doubt_gets_more() -> None:
    seq = policy([{("m", "deviant"): 0.001, ("m", "honest"): 0.9, ("m", "doubt"): 0.2}])
    assert len(await seq.next_requests()) == 16  # the whole plan first
    extra = await seq.next_requests()
    assert {(r.endpoint, r.request.probe_id) for r in extra} == {
        ("doubt", "s"),
        ("reference", "s"),
    }
    assert sorted(r.request.sample_index for r in extra if r.endpoint == "doubt") == [3, 4]
    assert seq.state[("m", "deviant")].decision == "settled_deviant"
    assert seq.state[("m", "honest")].decision == "settled_consistent"
    assert seq.state[("m", "doubt")].decision == "continue"


async def test_each_look_tests_at_alpha_over_looks() -> None:
    """0.03 is below alpha but above alpha / 3: not settled as deviant on the first look."""
    seq = policy([{k: 0.03 for k in PROVIDERS}, {k: 0.01 for k in PROVIDERS}])
    await seq.next_requests()
    first = await seq.next_requests()
    assert {r.endpoint for r in first} == {"deviant", "honest", "doubt", "reference"}
    second = await seq.next_requests()
    assert len(second) == 0 and all(s.decision == "settled_deviant" for s in seq.state.values())
    assert all(s.looks == 2 for s in seq.state.values())


async def test_the_last_look_settles_everyone_and_indices_never_repeat() -> None:
    doubt = {k: 0.2 for k in PROVIDERS}
    seq = policy([doubt, doubt, doubt], looks=3)
    await seq.next_requests()
    indices = [r.request.sample_index for r in await seq.next_requests()]
    indices += [r.request.sample_index for r in await seq.next_requests()]
    assert len(await seq.next_requests()) == 0
    assert sorted(set(indices)) == [3, 4, 5, 6]
    assert all(s.decision == "settled_consistent" for s in seq.state.values())


async def test_a_lone_promising_test_keeps_a_provider_in_doubt() -> None:
    """Combined over many tests the p-value looks honest, but one test alone is below the
    futility level (0.05 by default): more samples tell a weak fault from chance."""
    combined = {k: 0.9 for k in PROVIDERS}
    seq = policy([combined], smallest={("m", "doubt"): 0.01})
    await seq.next_requests()
    extra = await seq.next_requests()
    assert {r.endpoint for r in extra} == {"doubt", "reference"}
    assert seq.state[("m", "honest")].decision == "settled_consistent"


async def test_a_provider_without_tests_is_not_asked_again() -> None:
    seq = policy([{("m", "deviant"): None, ("m", "honest"): None, ("m", "doubt"): None}])
    await seq.next_requests()
    assert len(await seq.next_requests()) == 0


async def test_the_judge_sees_every_answer_stored(tmp_path: Path) -> None:
    """The runner stores every answer of a look before the policy judges it."""
    store = make_store(tmp_path)
    honest, doubt = Scripted("honest", delay_s=0.01), Scripted("doubt", delay_s=0.01)
    endpoints = [endpoint(store, honest), endpoint(store, doubt)]
    seen: list[dict[str, int]] = []

    async def judge() -> dict[EndpointKey, Evidence]:
        seen.append({t["provider"]: t["requests"] for t in store.provider_totals("r")})
        return {("m", "honest"): Evidence(0.9), ("m", "doubt"): Evidence(0.2)}

    first = Plan.of(
        PlannedRequest("m", e.name, CompletionRequest.from_case(CASE, k))
        for k in range(5)
        for e in endpoints
    )
    seq = SequentialPolicy(
        first,
        {"m": [CASE]},
        [("m", "honest"), ("m", "doubt")],
        {},
        judge,
        Sequential(looks=3, extra_samples=4),
        alpha=0.05,
    )
    run = RoundRunner(
        store,
        "r",
        endpoints,
        {CASE.content_hash: CASE},
        seq,
        SpendMeter(RoundBudget()),
        Redactor([]),
    )
    outcome = await run.run()
    assert seen == [
        {"honest": 5, "doubt": 5},
        {"honest": 5, "doubt": 9},
        {"honest": 5, "doubt": 13},  # the last look settles it
    ]
    assert honest.calls == 5 and doubt.calls == 13 and outcome.stored == 18
