"""Scorers: one stored sample -> `ScoreRecord`s. Importing this package registers the
built-in scorers, exactly as a third-party module registers its own."""

from __future__ import annotations

from auditor.records import CompletionResponse, ProbeCase, ScoreRecord
from auditor.scorers import expect, shape
from auditor.scorers.base import Scorer, scorers

__all__ = ["Scorer", "expect", "score_all", "scorers", "shape"]


def score_all(case: ProbeCase, response: CompletionResponse) -> list[ScoreRecord]:
    """Run every registered scorer with its default params, in name order.

    Each record is stamped with the registered name and the params the scorer ran with, so
    a stored score always says what produced it.
    """
    records: list[ScoreRecord] = []
    for name in scorers.names():
        scorer = scorers.get(name)()
        params = dict(scorer.params)
        for record in scorer.score(case, response):
            records.append(record.model_copy(update={"scorer": name, "scorer_params": params}))
    return records
