"""The shape of an answer: its length, its token count and whether it hit max_tokens.

These carry no judgement; compared across providers they expose a clamped max_tokens, a
chattier persona or a template that makes the model ramble.
"""

from __future__ import annotations

from auditor.records import CompletionResponse, ProbeCase, ScoreRecord
from auditor.scorers.base import Scorer, scorers


@scorers.register("shape")
class ShapeScorer(Scorer):
    name = "shape"

    def score(self, case: ProbeCase, response: CompletionResponse) -> list[ScoreRecord]:
        if not response.ok:
            return []
        tokens = response.usage.completion_tokens
        hit = response.finish_reason == "length"
        return [
            self._record("chars", float(len(response.text or ""))),
            self._record("completion_tokens", None if tokens is None else float(tokens)),
            self._record(
                "hit_max_tokens",
                1.0 if hit else 0.0,
                {"finish_reason": response.finish_reason, "max_tokens": case.params.max_tokens},
            ),
        ]
