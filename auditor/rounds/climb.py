"""The context ladder, climbed one rung at a time: a provider that fails two rungs in a row
is sent no higher rung.

Long prompts are the expensive part of an audit, and a provider whose window is cut at a
quarter of the model's gains nothing from being sent the three longest rungs. `LadderClimb`
wraps the round's budget policy: its first plan is the other cases (through the wrapped
policy) and the ladder's lowest rung; each later plan is the next rung, for the providers
still climbing and for the model's reference (while any of its providers climbs), until the
top; then the wrapped policy goes on (its further looks, if any). After each rung, `rungs`
reads what is stored: each provider's rung verdicts (`auditor.stats.ladder`), shortest first.
A provider stops once its latest two rungs that could be judged both fail ("unknown" rungs,
where every request errored, neither count nor reset). Rungs it was not sent are not judged:
its effective window is where it broke, whatever lies above.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from auditor.records import ProbeCase
from auditor.rounds.budget import BudgetPolicy, EndpointKey, Plan
from auditor.stats.ladder import RungStatus

#: Consecutive failing rungs after which a provider climbs no higher.
FAILS_TO_STOP = 2

#: Every provider's rung verdicts so far (shortest first), from what is stored.
ReadRungs = Callable[[], Awaitable[dict[EndpointKey, list[RungStatus]]]]


def is_ladder_case(case: ProbeCase) -> bool:
    return (case.metadata or {}).get("generator") == "context_ladder"


def rungs_of(cases: list[ProbeCase]) -> list[list[ProbeCase]]:
    """A model's ladder cases by rung (the length they were built for), shortest first."""
    by_target: dict[int, list[ProbeCase]] = {}
    for case in cases:
        if is_ladder_case(case):
            target = int((case.metadata or {}).get("target_tokens") or 0)
            by_target.setdefault(target, []).append(case)
    return [by_target[t] for t in sorted(by_target)]


def stops_climbing(statuses: list[RungStatus]) -> bool:
    """Whether the latest `FAILS_TO_STOP` judged rungs all fail."""
    judged = [s for s in statuses if s != "unknown"]
    return len(judged) >= FAILS_TO_STOP and all(s == "fail" for s in judged[-FAILS_TO_STOP:])


@dataclass
class LadderClimb(BudgetPolicy):
    """See the module docstring. `inner`'s plans must hold no ladder case."""

    inner: BudgetPolicy
    ladders: dict[str, list[list[ProbeCase]]]  # per model: its rungs, shortest first
    providers: list[EndpointKey]
    references: dict[str, str]  # model -> the reference endpoint's name
    rungs: ReadRungs
    stopped: dict[EndpointKey, int] = field(default_factory=dict)  # -> rungs it was sent
    _rung: int = 0

    def _rung_plan(self, climbing: list[EndpointKey]) -> Plan:
        plans = []
        for model, ladder in self.ladders.items():
            keys = [k for k in climbing if k[0] == model]
            if not keys or self._rung >= len(ladder):
                continue
            if model in self.references:
                keys.append((model, self.references[model]))
            plans.append(Plan.samples(keys, ladder[self._rung]))
        return Plan.union(plans)

    def _top(self) -> int:
        return max((len(ladder) for ladder in self.ladders.values()), default=0)

    async def next_requests(self) -> Plan:
        if self._rung == 0:
            first = await self.inner.next_requests()
            plan = Plan.chain([first, self._rung_plan(self.providers)])
            self._rung = 1
            return plan
        if self._rung < self._top():
            verdicts = await self.rungs()
            for key in self.providers:
                if key not in self.stopped and stops_climbing(verdicts.get(key, [])):
                    self.stopped[key] = self._rung
            climbing = [k for k in self.providers if k not in self.stopped]
            plan = self._rung_plan(climbing)
            self._rung += 1
            if len(plan):
                return plan
            self._rung = self._top()  # nobody climbs: the ladder is done
        return await self.inner.next_requests()
