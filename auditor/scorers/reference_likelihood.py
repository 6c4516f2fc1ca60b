"""Samples -> reference log-likelihood scores: every answer of a round, scored under the
reference weights.

Each answered sample (the providers' and the reference's own) gets five numbers, stored as
scores of the `reference_likelihood` scorer as soon as they are computed:

- `ref_logprob_mean`: the mean log-probability the reference gives the answer's tokens;
- `ref_top1_share`: the share of the answer's tokens that are the reference's top choice;
- `ref_gap_mean`: the mean gap, in nats, between the reference's top choice and the token
  the answer has (0 where they agree): small where numeric noise broke a near-tie, large
  where other weights or settings chose a token the reference would not;
- `ref_far_share`: the share of tokens outside the reference's top `FAR_RANK` choices: greedy
  decoding on slightly other weights picks near the top, sampling picks from the tail too;
- `ref_tokens`: the number of tokens scored, with the steps themselves in its `detail`
  (`token_trace`: rank, gap and the near candidates of every step, what the noise model reads).

Scoring costs a forward pass over the prompt and the answer, at about prompt-evaluation
speed (some 75 tokens a second for the demo model on one core), so: answers to the same
prompt are scored one after another (an engine that keeps its prompt cache evaluates each
prompt once), an answer equal to one already scored for the same probe reuses its scores
(honest providers mostly repeat the reference's greedy answers), and only the first
`MAX_TOKENS` tokens of an answer are scored. Long-context answers are scored too: their long
prompt is evaluated once for all the answers to it, and a context cut short shows there.
A sampled answer (temperature > 0) is scored with its request's sampler: how often each cut
a server may apply (`SAMPLER_CUTS`) would have removed its tokens, against how often honest
sampling draws such tokens (`sampler_cuts`, in the trace).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import structlog

from auditor.providers.continuation import (
    SAMPLER_CUTS,
    ContinuationScorer,
    ScoringUnavailable,
    TokenScore,
)
from auditor.records import ScoreRecord
from auditor.rounds.runner import RoundProgress
from auditor.scorers.reasoning import leaked_reasoning
from auditor.storage.repository import Store

log = structlog.get_logger(__name__)

SCORER = "reference_likelihood"
TOP_K = 20  # alternatives asked of the scorer at each step (what an endpoint's logprobs allow)
FAR_RANK = 5  # `ref_far_share`: tokens outside the reference's top 5
MAX_TOKENS = 48
NEAR_CAP = 3.0  # gaps (nats) kept per step: farther candidates cannot win under honest noise
NEAR_KEEP = 8  # at most this many candidates kept per step
METRICS = ("ref_logprob_mean", "ref_top1_share", "ref_gap_mean", "ref_far_share", "ref_tokens")
#: The score whose `detail` holds the answer's steps (`token_trace`).
TRACE_METRIC = "ref_tokens"


@dataclass
class LikelihoodOutcome:
    scored: int
    skipped: int  # answers the reference could not score (too long for its context...)
    note: str | None  # why scoring stopped, when it did


def token_trace(tokens: Sequence[TokenScore]) -> dict[str, Any]:
    """Each step of the answer under the reference, compactly (the `detail` of `ref_tokens`):
    `rank` of the answer's token among the reference's choices (0: its top choice), `gap`
    between the top choice and the answer's token (nats), and `near`: the gaps of the other
    candidates within `NEAR_CAP` of the top, nearest first. The noise model
    (`auditor.stats.numeric_noise`) reads how likely honest serving is to depart at each step."""
    ranks, gaps, near = [], [], []
    for t in tokens:
        top = t.top[0][1] if t.top else t.logprob
        ranks.append(min(t.rank, 999))
        gaps.append(round(max(0.0, top - t.logprob), 3))
        others = sorted(round(top - lp, 3) for _, lp in t.top[1:] if top - lp < NEAR_CAP)
        near.append(others[:NEAR_KEEP])
    trace: dict[str, Any] = {"rank": ranks, "gap": gaps, "near": near}
    if tokens and tokens[0].cut_mass:
        trace["cuts"] = sampler_cuts(tokens)
    return trace


def sampler_cuts(tokens: Sequence[TokenScore]) -> dict[str, list[float]]:
    """Per cut of `SAMPLER_CUTS` (`top_k=40`...): [tokens the cut would remove, the number
    honest sampling is expected to draw, the log-chance that it draws none]."""
    out = {}
    for c, (kind, value) in enumerate(SAMPLER_CUTS):
        masses = np.array([t.cut_mass[c] for t in tokens])
        hits = sum(t.cut_hit[c] for t in tokens)
        none = float(np.log1p(-np.clip(masses, 0.0, 1.0 - 1e-12)).sum())
        out[f"{kind}={value:g}"] = [float(hits), round(float(masses.sum()), 4), round(none, 4)]
    return out


def likelihood_scores(tokens: Sequence[TokenScore], params: dict[str, Any]) -> list[ScoreRecord]:
    """The per-answer figures of `tokens` (see the module docstring), with the steps
    themselves in the `detail` of `ref_tokens`."""
    logprobs = np.array([t.logprob for t in tokens])
    gaps = np.array([max(0.0, t.top[0][1] - t.logprob) if t.top else 0.0 for t in tokens])
    values = {
        "ref_logprob_mean": float(logprobs.mean()),
        "ref_top1_share": float(np.mean([t.rank == 0 for t in tokens])),
        "ref_gap_mean": float(gaps.mean()),
        "ref_far_share": float(np.mean([t.rank >= FAR_RANK for t in tokens])),
        "ref_tokens": float(len(tokens)),
    }
    trace = token_trace(tokens)
    return [
        ScoreRecord(
            scorer=SCORER,
            scorer_params=params,
            metric=m,
            value=values[m],
            detail=trace if m == TRACE_METRIC else {},
        )
        for m in METRICS
    ]


async def score_round(
    store: Store,
    round_id: str,
    model: str,
    scorer: ContinuationScorer,
    reference_digest: str,
    progress: RoundProgress | None = None,
) -> LikelihoodOutcome:
    """Score every answered sample of `model` in the round that has no likelihood yet."""
    todo = store.answers_to_score(round_id, model, SCORER)
    key = (model, "reference likelihood")
    if progress is not None and todo:
        progress.planned(key, len(todo))
    params = {"top_k": TOP_K, "max_tokens": MAX_TOKENS, "reference": reference_digest}
    scored = skipped = 0
    done: dict[tuple[str, str, str | None], list[ScoreRecord]] = {}
    for answer in todo:
        records = done.get((answer.probe_hash, answer.text, answer.reasoning))
        if records is None:
            try:
                sampled = (answer.params.get("temperature") or 0) > 0
                sampler = answer.params if sampled else None
                # A reasoning model answers after its reasoning: returned apart, or left in
                # the answer (then the answer after it is what is scored).
                reasoning, text = answer.reasoning, answer.text
                if reasoning is None and (leak := leaked_reasoning(text)) is not None:
                    reasoning, text = leak
                context = scorer.context_of(answer.messages, reasoning)
                tokens = (
                    await scorer.score_continuation(context, text, TOP_K, MAX_TOKENS, sampler)
                    if text
                    else []
                )
            except ScoringUnavailable as exc:
                log.warning("likelihood.unavailable", round_id=round_id, reason=str(exc))
                note = f"continuation scores not available: {exc}"
                return LikelihoodOutcome(scored, skipped, note)
            except ValueError as exc:  # e.g. longer than the reference's context
                log.info("likelihood.skipped", sample_id=answer.sample_id, reason=str(exc))
                tokens = []
            records = likelihood_scores(tokens, params) if tokens else []
            done[(answer.probe_hash, answer.text, answer.reasoning)] = records
        if records:
            store.add_scores(answer.sample_id, records)
            scored += 1
        else:
            skipped += 1
        if progress is not None:
            progress.answered(key, bool(records))
    log.info("likelihood.scored", round_id=round_id, model=model, scored=scored, skipped=skipped)
    return LikelihoodOutcome(scored, skipped, None)
