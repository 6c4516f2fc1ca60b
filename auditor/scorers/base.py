"""Scorers turn one stored sample into numbers (`ScoreRecord`s)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from auditor.plugins import Registry
from auditor.records import CompletionResponse, ProbeCase, ScoreRecord


class Scorer(ABC):
    """A scorer reads a probe case and one response and returns zero or more scores.
    It must be pure: same inputs, same scores; no I/O."""

    name: str

    def __init__(self, **params: Any) -> None:
        self.params = params

    @abstractmethod
    def score(self, case: ProbeCase, response: CompletionResponse) -> list[ScoreRecord]: ...

    def _record(
        self,
        metric: str,
        value: float | None,
        detail: dict[str, Any] | None = None,
        passed: bool | None = None,
    ) -> ScoreRecord:
        """A score stamped with this scorer's name and parameters."""
        return ScoreRecord(
            scorer=self.name,
            scorer_params=dict(self.params),
            metric=metric,
            value=value,
            passed=passed,
            detail=detail or {},
        )


scorers: Registry[type[Scorer]] = Registry("scorer", group="auditor.scorers")
