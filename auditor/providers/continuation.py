"""Scoring a given continuation under the reference weights: what only a reference can give.

A provider's answer, scored token by token under the reference (log-probability, rank among
the reference's own choices), betrays other weights or sampling settings with far fewer
samples than comparing texts. The embedded engine computes it from its own logits; a trusted
endpoint (vLLM, llama.cpp server) computes it through `/v1/completions` with `echo` and
`logprobs`, given the prompt text that the model's chat template makes of the messages.
Where neither is possible, the scorer is absent and the signals that need it are reported
`not_available`, never faked.
"""

from __future__ import annotations

import json
import math
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import httpx
import numpy as np

from auditor.config import EndpointReference

if TYPE_CHECKING:
    from llama_cpp.llama_types import ChatCompletionRequestMessage


#: Cuts a sampler may apply to the distribution (a server's own defaults often do): a token
#: is cut by top_k=k when k tokens or more are likelier, by min_p=m when its probability is
#: below m times the top token's, by top_p=P when it lies outside the smallest set of likeliest
#: tokens holding P of the mass (all on the model's raw distribution).
SAMPLER_CUTS: tuple[tuple[str, float], ...] = (
    ("top_k", 20), ("top_k", 40), ("top_k", 50), ("top_k", 100),
    ("min_p", 0.02), ("min_p", 0.05), ("min_p", 0.1),
    ("top_p", 0.9), ("top_p", 0.95),
)  # fmt: skip


def cut_masses(
    logprobs: np.ndarray, token: int, sampler: dict[str, Any]
) -> tuple[tuple[float, ...], tuple[bool, ...]]:
    """For one step's raw log-probabilities (the whole vocabulary): the chance that honest
    sampling with `sampler` (temperature, and top_p, top_k, min_p where set) draws a token
    each cut of `SAMPLER_CUTS` removes, and whether `token` is one."""
    order = np.argsort(-logprobs, kind="stable")
    ranks = np.empty_like(order)
    ranks[order] = np.arange(order.size)
    raw = np.exp(logprobs - logprobs.max())
    raw /= raw.sum()
    temperature = float(sampler.get("temperature") or 1.0)
    honest = np.exp((logprobs - logprobs.max()) / temperature)
    if sampler.get("top_k"):
        honest[ranks >= int(sampler["top_k"])] = 0.0
    if sampler.get("min_p"):
        honest[raw < float(sampler["min_p"]) * raw.max()] = 0.0
    honest /= honest.sum()
    if sampler.get("top_p") is not None and float(sampler["top_p"]) < 1.0:
        honest[~_nucleus(honest, order, float(sampler["top_p"]))] = 0.0
        honest /= honest.sum()
    masses, hits = [], []
    for kind, value in SAMPLER_CUTS:
        if kind == "top_k":
            cut = ranks >= value
        elif kind == "min_p":
            cut = raw < value * raw.max()
        else:
            cut = ~_nucleus(raw, order, value)
        masses.append(float(honest[cut].sum()))
        hits.append(bool(cut[token]))
    return tuple(masses), tuple(hits)


def _nucleus(probs: np.ndarray, order: np.ndarray, mass: float) -> np.ndarray:
    """The smallest set of likeliest tokens holding `mass` of the probability (a mask)."""
    cumulative = np.cumsum(probs[order])
    size = int(np.searchsorted(cumulative, mass)) + 1
    keep = np.zeros(probs.size, dtype=bool)
    keep[order[:size]] = True
    return keep


@dataclass(frozen=True)
class TokenScore:
    """One token of a given continuation under the reference.

    `rank` is the number of tokens the reference prefers to it (0: its top choice); an
    endpoint that reports only the top k alternatives gives k when the token is not among
    them, a lower bound.

    Scored with a sampler (a sampled answer, `sampler` given to `score_continuation`):
    `cut_mass[c]`, the chance that honest sampling with that sampler draws a token that cut c
    of `SAMPLER_CUTS` would remove, and `cut_hit[c]`, whether this token is one. Empty where
    the scorer cannot see the whole distribution (an endpoint's top-k logprobs).
    """

    token: str
    logprob: float
    rank: int
    top: list[tuple[str, float]]
    cut_mass: tuple[float, ...] = ()
    cut_hit: tuple[bool, ...] = ()


class ScoringUnavailable(Exception):
    """The reference cannot score continuations (endpoint without echo logprobs...)."""


class ContinuationScorer(ABC):
    """Scores the tokens of `continuation` (a provider's answer) after `messages`."""

    @abstractmethod
    async def score_continuation(
        self,
        messages: list[dict[str, Any]],
        continuation: str,
        top_k: int = 5,
        max_tokens: int | None = None,
        sampler: dict[str, Any] | None = None,
    ) -> list[TokenScore]:
        """`sampler`: the request's sampling parameters (temperature, top_p, top_k, min_p),
        for `TokenScore.cut_mass`; None for a greedy answer."""

    def context_of(
        self, messages: list[dict[str, Any]], reasoning: str | None
    ) -> list[dict[str, Any]]:
        """The messages an answer is scored after: those it answered, and, for an engine
        that knows where a reasoning model's reasoning goes, the reasoning it answered
        after. By default the messages alone."""
        return messages

    async def aclose(self) -> None:
        return None


class ChatTemplate:
    """The model's own chat template (Jinja), rendering messages to the prompt text."""

    def __init__(self, template: str, bos_token: str, eos_token: str) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self._formatter = Jinja2ChatFormatter(
            template=template, eos_token=eos_token, bos_token=bos_token
        )

    def render(self, messages: list[dict[str, Any]]) -> str:
        # OpenAI-style message dicts, which llama.cpp's TypedDicts describe
        chat = cast("list[ChatCompletionRequestMessage]", messages)
        return self._formatter(messages=chat).prompt

    @classmethod
    def from_file(cls, path: str | Path) -> ChatTemplate:
        """From a GGUF (its `tokenizer.chat_template`) or a Hugging Face
        `tokenizer_config.json` (its `chat_template`, `bos_token`, `eos_token`)."""
        path = Path(path).expanduser()
        if not path.is_file():
            raise ScoringUnavailable(f"tokenizer_path: no such file: {path}")
        if path.suffix == ".gguf":
            return cls._from_gguf(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ScoringUnavailable(f"tokenizer_path: cannot read {path}: {exc}") from None
        template = data.get("chat_template") if isinstance(data, dict) else None
        if isinstance(template, list):  # several named templates: the default one
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
            template = named.get("default")
        if not isinstance(template, str):
            raise ScoringUnavailable(f"tokenizer_path: {path} holds no chat_template")
        return cls(template, _token_text(data.get("bos_token")), _token_text(data.get("eos_token")))

    @classmethod
    def _from_gguf(cls, path: Path) -> ChatTemplate:
        from llama_cpp import Llama

        try:
            vocab = Llama(model_path=str(path), vocab_only=True, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise ScoringUnavailable(f"tokenizer_path: cannot read {path}: {exc}") from None
        try:
            return cls.from_llama(vocab)
        finally:
            vocab.close()

    @classmethod
    def from_llama(cls, llm: Any) -> ChatTemplate:
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ScoringUnavailable("the GGUF has no chat template")

        def text(token: int) -> str:
            return str(llm.detokenize([token], special=True).decode(errors="replace"))

        return cls(template, text(llm.token_bos()), text(llm.token_eos()))


def _token_text(value: object) -> str:
    """`bos_token` in tokenizer_config.json is a string or an AddedToken mapping."""
    if isinstance(value, dict):
        return str(value.get("content") or "")
    return value if isinstance(value, str) else ""


class EndpointContinuationScorer(ContinuationScorer):
    """Continuation scores from a trusted OpenAI-compatible server's `/v1/completions`:
    the prompt text plus the answer, echoed back with the logprobs of every token."""

    def __init__(self, config: EndpointReference, template: ChatTemplate) -> None:
        self.config = config
        self.template = template
        key = os.environ.get(config.api_key_env) if config.api_key_env else None
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = httpx.AsyncClient(
            base_url=str(config.base_url).rstrip("/") + "/",
            headers=headers,
            timeout=config.timeout_s,
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    async def score_continuation(
        self,
        messages: list[dict[str, Any]],
        continuation: str,
        top_k: int = 5,
        max_tokens: int | None = None,
        sampler: dict[str, Any] | None = None,  # only top-k logprobs here: no cut masses
    ) -> list[TokenScore]:
        if not continuation:
            return []
        prefix = self.template.render(messages)
        body = {
            "model": self.config.model,
            "prompt": prefix + continuation,
            "echo": True,
            "logprobs": top_k,
            "max_tokens": 1,  # vLLM refuses 0; the one generated token is left out below
            "temperature": 0,
        }
        try:
            response = await self.client.post("completions", json=body)
        except httpx.HTTPError as exc:
            raise ScoringUnavailable(f"/v1/completions: {type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            raise ScoringUnavailable(
                f"/v1/completions answered HTTP {response.status_code}: {response.text[:200]}"
            )
        try:
            logprobs = response.json()["choices"][0]["logprobs"]
            scores = _continuation_scores(logprobs, len(prefix), len(prefix) + len(continuation))
            return scores[:max_tokens]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ScoringUnavailable(
                f"/v1/completions gave no echoed logprobs ({type(exc).__name__}: {exc})"
            ) from None


def _continuation_scores(logprobs: dict[str, Any], start: int, end: int) -> list[TokenScore]:
    """The echoed tokens that lie within [start, end) of the text, with their ranks among
    the reported alternatives. A token straddling `start` belongs to the prompt."""
    tokens, values = logprobs["tokens"], logprobs["token_logprobs"]
    tops, offsets = logprobs.get("top_logprobs") or [None] * len(tokens), logprobs["text_offset"]
    out = []
    for token, value, top, offset in zip(tokens, values, tops, offsets, strict=True):
        if offset < start or offset >= end or value is None:
            continue
        alternatives = sorted((top or {}).items(), key=lambda kv: kv[1], reverse=True)
        logprob = float(value)
        if not math.isfinite(logprob):
            raise ValueError(f"logprob {value!r} for token {token!r}")
        out.append(
            TokenScore(
                token=token,
                logprob=logprob,
                rank=sum(lp > logprob + 1e-6 for _, lp in alternatives),
                top=[(t, float(lp)) for t, lp in alternatives],
            )
        )
    if not out:
        raise ValueError("no echoed token falls within the continuation")
    return out
