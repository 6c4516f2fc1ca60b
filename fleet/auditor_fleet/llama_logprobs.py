"""Token logprobs for the fleet's llama.cpp backend, in the fleet's contract.

Generated tokens: llama-cpp-python's chat and text completion logprobs
(`chat_logprobs`, `completion_logprobs`) are aligned to the answer's text (`align`), so
that the tokens concatenate to it. Prompt tokens, for legacy text completions with `echo`:
each prompt token's logprob is read from the logits of the position before it, with the
same noise as generated tokens get (`score_prompt`), and its text is split so that the
texts concatenate to the decoded prompt (`token_texts`).
"""

from __future__ import annotations

import codecs
from typing import TYPE_CHECKING, Any

import numpy as np

from auditor_fleet.backends import TokenLogprob, TopLogprob

if TYPE_CHECKING:
    from llama_cpp import Llama

#: Prompt positions scored at once (a row of logits is 49,152 floats).
_SCORE_ROWS = 128


def score_prompt(
    llm: Llama, tokens: list[int], top: int, noise: float, seed: int
) -> list[tuple[float | None, dict[str, float] | None]]:
    """Each prompt token's logprob and its position's `top` best alternatives, from the
    logits the model stored for the position before it (the first token has none)."""
    rng = np.random.default_rng([seed, 1]) if noise > 0 else None
    ids = np.asarray(tokens, dtype=np.int64)
    names: dict[int, str] = {}

    def name(token: int) -> str:
        if token not in names:
            piece = llm.detokenize([token], special=True)
            names[token] = piece.decode("utf-8", errors="ignore")
        return names[token]

    out: list[tuple[float | None, dict[str, float] | None]] = [(None, None)]
    for start in range(0, len(tokens) - 1, _SCORE_ROWS):
        end = min(start + _SCORE_ROWS, len(tokens) - 1)
        rows = np.array(llm.scores[start:end], dtype=np.float64)
        if rng is not None:
            rows += rng.standard_normal(rows.shape) * noise
        rows -= rows.max(axis=1, keepdims=True)
        rows -= np.log(np.exp(rows).sum(axis=1, keepdims=True))
        chosen = rows[np.arange(end - start), ids[start + 1 : end + 1]]
        best = np.argpartition(rows, -top, axis=1)[:, -top:] if top else None
        for i in range(end - start):
            alternatives: dict[str, float] = {}
            if best is not None:
                ranked = best[i][np.argsort(-rows[i, best[i]], kind="stable")]
                for t in ranked.tolist():
                    alternatives.setdefault(name(t), float(rows[i, t]))
            out.append((float(chosen[i]), alternatives))
    return out


def token_texts(llm: Llama, tokens: list[int]) -> list[str]:
    """The tokens' texts, concatenating to the decoded prompt: a character split over
    several tokens belongs to the one that completes it (the others get "")."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    texts = [decoder.decode(llm.detokenize([t], special=True)) for t in tokens]
    rest = decoder.decode(b"", final=True)
    if rest:
        texts[-1] += rest
    return texts


def chat_logprobs(data: dict[str, Any] | None) -> list[tuple[str, float, list[tuple[str, float]]]]:
    entries = (data or {}).get("content") or []
    return [
        (
            e["token"],
            float(e["logprob"]),
            [(a["token"], float(a["logprob"])) for a in e.get("top_logprobs") or []],
        )
        for e in entries
    ]


def completion_logprobs(
    data: dict[str, Any] | None,
) -> list[tuple[str, float, list[tuple[str, float]]]]:
    if not data:
        return []
    return [
        (token, float(logprob), list((top or {}).items()))
        for token, logprob, top in zip(
            data["tokens"], data["token_logprobs"], data["top_logprobs"], strict=False
        )
    ]


def align(
    pairs: list[tuple[str, float, list[tuple[str, float]]]], text: str, top: int
) -> list[TokenLogprob]:
    """Token logprobs whose tokens concatenate to `text`, as the fleet's contract requires.

    llama-cpp-python decodes each token alone, so a character split over several tokens
    (an emoji) comes back as empty strings, and a stop string may cut the last token; the
    missing text is given to the next token that matches, the rest to the last one.
    """
    out: list[TokenLogprob] = []
    pos = 0
    for token, logprob, alternatives in pairs:
        found = text.find(token, pos) if token else -1
        piece = ""
        if found >= 0:
            piece, pos = text[pos:found] + token, found + len(token)
        ranked = sorted(alternatives, key=lambda a: a[1], reverse=True)[:top]
        out.append(
            TokenLogprob(
                token=piece,
                logprob=logprob,
                top_logprobs=[TopLogprob(token=t, logprob=lp) for t, lp in ranked],
            )
        )
    if pos < len(text):
        if out:
            out[-1] = out[-1].model_copy(update={"token": out[-1].token + text[pos:]})
        else:
            out.append(TokenLogprob(token=text[pos:], logprob=0.0))
    return out
