"""What to send next, and when to stop spending.

A `BudgetPolicy` decides which requests the runner sends next, given what has been answered
so far. `SendEverySample` sends every probe once per sample; `SequentialPolicy` asks in looks
and stops asking a provider once its verdict is settled, so the budget goes where the doubt
is. `SpendMeter` enforces the per-round caps (requests, tokens, cost) of the config.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from auditor.config import RoundBudget, Sequential
from auditor.records import CompletionRequest, CompletionResponse, ProbeCase
from auditor.stats import Decision, sequential_decision

EndpointKey = tuple[str, str]  # (model, endpoint name)


@dataclass(frozen=True)
class Evidence:
    """A provider's tests on what is stored so far: their combined p-value (None: nothing
    to decide on) and the smallest uncorrected one."""

    combined_p: float | None
    smallest_p: float | None = None


Judge = Callable[[], Awaitable[dict[EndpointKey, Evidence]]]


@dataclass(frozen=True)
class PlannedRequest:
    """One request for one endpoint (a provider, or `reference`)."""

    model: str
    endpoint: str
    request: CompletionRequest


@dataclass(frozen=True)
class Answer:
    planned: PlannedRequest
    response: CompletionResponse


Requests = Callable[[], Iterator[CompletionRequest]]


class Plan:
    """Requests to send, by endpoint: how many, and a generator of them that the runner's
    workers draw from as they go. A round of any size is never held as a list of requests,
    so its memory stays flat in the number of requests."""

    def __init__(self, streams: dict[EndpointKey, tuple[int, Requests]] | None = None) -> None:
        self._streams = {k: v for k, v in (streams or {}).items() if v[0] > 0}

    @classmethod
    def of(cls, planned: Iterable[PlannedRequest]) -> Plan:
        """A plan of requests written out, each endpoint's in the order given."""
        by_key: dict[EndpointKey, list[CompletionRequest]] = defaultdict(list)
        for p in planned:
            by_key[(p.model, p.endpoint)].append(p.request)
        return cls({k: (len(v), v.__iter__) for k, v in by_key.items()})

    @classmethod
    def samples(
        cls,
        endpoints: Iterable[EndpointKey],
        cases: Sequence[ProbeCase],
        first: int = 0,
        count: int | None = None,
    ) -> Plan:
        """For every endpoint, samples `first` to `first + count` of every case in order, the
        samples of a case together; `count` None: each case's own `samples`."""

        def numbers(case: ProbeCase) -> range:
            return range(first, first + (case.samples if count is None else count))

        def requests() -> Iterator[CompletionRequest]:
            for case in cases:
                for k in numbers(case):
                    yield CompletionRequest.from_case(case, k)

        total = sum(len(numbers(c)) for c in cases)
        return cls({key: (total, requests) for key in endpoints})

    @classmethod
    def union(cls, plans: Iterable[Plan]) -> Plan:
        """One plan of several (each endpoint in one of them)."""
        return cls({k: v for p in plans for k, v in p._streams.items()})

    @classmethod
    def chain(cls, plans: Iterable[Plan]) -> Plan:
        """One plan of several that may share endpoints: each endpoint's requests of the
        first plan, then of the next."""
        by_key: dict[EndpointKey, list[tuple[int, Requests]]] = defaultdict(list)
        for p in plans:
            for k, v in p._streams.items():
                by_key[k].append(v)

        def chained(streams: list[tuple[int, Requests]]) -> Requests:
            return lambda: (r for _, requests in streams for r in requests())

        return cls({k: (sum(n for n, _ in v), chained(v)) for k, v in by_key.items()})

    def endpoints(self) -> list[EndpointKey]:
        return list(self._streams)

    def count(self, key: EndpointKey) -> int:
        return self._streams[key][0] if key in self._streams else 0

    def requests(self, key: EndpointKey) -> Iterator[PlannedRequest]:
        """The endpoint's requests, generated one at a time."""
        model, name = key
        return (PlannedRequest(model, name, r) for r in self._streams[key][1]())

    def __len__(self) -> int:
        return sum(n for n, _ in self._streams.values())

    def __iter__(self) -> Iterator[PlannedRequest]:
        for key in self._streams:
            yield from self.requests(key)


class BudgetPolicy(ABC):
    @abstractmethod
    async def next_requests(self) -> Plan:
        """Requests to send next (everything sent so far is stored by then, for a policy
        that reads it). An empty plan ends the round."""


class SendEverySample(BudgetPolicy):
    """The plain policy: the whole plan at once, nothing more."""

    def __init__(self, plan: Plan) -> None:
        self._plan: Plan | None = plan

    async def next_requests(self) -> Plan:
        plan, self._plan = self._plan or Plan(), None
        return plan


@dataclass
class Look:
    """One provider's state after a look: the decision and the p-value it rests on."""

    decision: Decision
    p_value: float | None
    looks: int


@dataclass
class SequentialPolicy(BudgetPolicy):
    """The whole plan first; then, after each look, `extra_samples` more samples of every case
    in `extendable` (the suite, per model) for the providers still in doubt.

    `judge` recomputes every provider's combined p-value from what is stored (the round's
    own comparisons and diagnosis tests, Benjamini-Hochberg combined). A provider is settled
    deviant when it is at most alpha / looks (`auditor.stats.sequential`: the union bound
    over looks keeps the false-alarm rate at alpha; the final verdict uses the same level),
    settled consistent when it is at least `consistent_p` or the last look is reached.
    The reference gets the same extra samples once per look while any provider is in doubt,
    so every extra provider sample has reference samples of the same probe to be compared
    with. Every case is extended, not only sampled ones: whatever kind of evidence is in doubt
    (a clamp hit now and then, an answer that moves on some requests) grows with it."""

    plan: Plan
    extendable: dict[str, list[ProbeCase]]  # per model: its cases (the suite, as sent to it)
    providers: list[EndpointKey]
    references: dict[str, str]  # model -> the reference endpoint's name
    judge: Judge
    settings: Sequential
    alpha: float
    state: dict[EndpointKey, Look] = field(default_factory=dict)
    _look: int = 0

    async def next_requests(self) -> Plan:
        if self._look == 0:
            self._look = 1
            return self.plan
        open_keys = self._decide(await self.judge())
        if self._look >= self.settings.looks or not open_keys or not self.extendable:
            return Plan()
        extra = self._extra(open_keys)
        self._look += 1
        return extra

    def _decide(self, evidence: dict[EndpointKey, Evidence]) -> list[EndpointKey]:
        """Record each open provider's decision at this look; return those still open."""
        still_open = []
        for key in self.providers:
            if key in self.state and self.state[key].decision != "continue":
                continue
            found = evidence.get(key, Evidence(None))
            p = found.combined_p
            decision: Decision = (
                "settled_consistent"  # nothing to test: more of the same will not help
                if p is None
                else sequential_decision(
                    p,
                    self._look,
                    self.settings.looks,
                    looks=self.settings.looks,
                    alpha=self.alpha,
                    n_min=1,
                    consistent_p=self.settings.consistent_p,
                    smallest_p=found.smallest_p,
                    futility_p=self.settings.futility_p,
                )
            )
            self.state[key] = Look(decision, p, self._look)
            if decision == "continue":
                still_open.append(key)
        return still_open

    def _extra(self, open_keys: list[EndpointKey]) -> Plan:
        extra = self.settings.extra_samples
        plans = []
        for model, cases in self.extendable.items():
            keys = [k for k in open_keys if k[0] == model]
            if not keys or not cases:
                continue
            first = max(c.samples for c in cases) + (self._look - 1) * extra
            if model in self.references:
                keys.append((model, self.references[model]))
            plans.append(Plan.samples(keys, cases, first, extra))
        return Plan.union(plans)


@dataclass
class SpendMeter:
    """Counts what a round spent; `exhausted` names the first cap reached, if any.

    Tokens count what is in flight (reserved) as spent, so a round cannot overshoot its
    token cap by more than one request's reservation per concurrency slot.
    """

    caps: RoundBudget
    requests: int = 0
    tokens: int = 0
    tokens_in_flight: int = 0
    cost: float = 0.0

    def exhausted(self) -> str | None:
        if self.caps.max_requests is not None and self.requests >= self.caps.max_requests:
            return "budget: max_requests"
        if (
            self.caps.max_tokens is not None
            and self.tokens + self.tokens_in_flight >= self.caps.max_tokens
        ):
            return "budget: max_tokens"
        if self.caps.max_cost is not None and self.cost >= self.caps.max_cost:
            return "budget: max_cost"
        return None

    def sent(self, reserved_tokens: int) -> None:
        self.requests += 1
        self.tokens_in_flight += reserved_tokens

    def answered(self, reserved_tokens: int, tokens: int, cost: float | None) -> None:
        self.tokens_in_flight -= reserved_tokens
        self.tokens += tokens
        self.cost += cost or 0.0
