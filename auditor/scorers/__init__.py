"""Scorers: one stored sample -> `ScoreRecord`s. Importing this package registers the
built-in scorers, exactly as a third-party module registers its own."""

from __future__ import annotations

from auditor.records import CompletionResponse, ProbeCase, ScoreRecord
from auditor.scorers import expect, shape
from auditor.scorers.base import Scorer, scorers

__all__ = ["Scorer", "expect", "score_all", "scorers", "shape"]


def score_all(
    case: ProbeCase,
    response: CompletionResponse,
    registered: list[tuple[str, type[Scorer]]] | None = None,
) -> list[ScoreRecord]:
    """Run every registered scorer (or those of `registered`, (name, class) pairs in name
    order, as another process registered them) with its default params, in name order.

    Each record is stamped with the registered name and the params the scorer ran with, so
    a stored score always says what produced it.
    """
    records: list[ScoreRecord] = []
    for name, cls in scorers.items() if registered is None else registered:
        scorer = _default(name, cls)
        params = scorer.params
        for record in scorer.score(case, response):
            if record.scorer != name or record.scorer_params != params:
                record = record.model_copy(update={"scorer": name, "scorer_params": dict(params)})
            records.append(record)
    return records


_instances: dict[tuple[str, type[Scorer]], Scorer] = {}


def _default(name: str, cls: type[Scorer]) -> Scorer:
    """The scorer registered as `name`, with its default params: built once (scorers are
    pure), not for every sample."""
    key = (name, cls)
    if key not in _instances:
        _instances[key] = cls()
    return _instances[key]
