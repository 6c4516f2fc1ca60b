"""What to send next, and when to stop spending.

A `BudgetPolicy` decides which requests the runner sends next, given what has been answered
so far; the default sends every probe once per sample. A sequential-testing policy (stop
asking a provider once its verdict is settled) plugs in through the same method.
`SpendMeter` enforces the per-round caps (requests, tokens, cost) of the config.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from auditor.config import RoundBudget
from auditor.records import CompletionRequest, CompletionResponse


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


class BudgetPolicy(ABC):
    @abstractmethod
    def next_requests(self, answers: Sequence[Answer]) -> list[PlannedRequest]:
        """Requests to send next, given the answers that arrived since the last call.
        An empty list ends the round."""


class SendEverySample(BudgetPolicy):
    """The plain policy: the whole plan at once, nothing more."""

    def __init__(self, plan: list[PlannedRequest]) -> None:
        self._plan: list[PlannedRequest] | None = plan

    def next_requests(self, answers: Sequence[Answer]) -> list[PlannedRequest]:
        plan, self._plan = self._plan or [], None
        return plan


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
