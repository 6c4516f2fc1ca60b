"""The fleet's model backend: the packaged GGUF, or a variant of it, through llama-cpp-python.

It answers the way the reference engine (`auditor.providers.llama_cpp`) does, so that an
honest member differs from the reference only by the planted numeric noise:

- the GGUF's own chat template (`create_chat_completion`), plain temperature/top-p
  sampling (top_k=0, min_p=0, repeat_penalty=1), `reset()` before every call (a reused
  prompt prefix changes the logits slightly), 256 completion tokens when none are asked;
- the noise: before every sampled token, Gaussian noise of std `noise` is added to the
  logits (a custom llama.cpp sampler, seeded per request). Real GPU serving never matches a
  reference bit for bit, even at temperature 0 (batching, kernels, reduction order); this is
  that. The noise is also written into the stored logits, so reported logprobs carry it.

The machine has 2 cores: each weights file is loaded once per process (`shared_model`) and
every model call in the process holds one lock (`MODEL_LOCK`), whichever member or weights
it serves. Members see the backend through `bind`, which gives each its weights (the
reference, a requantized or a perturbed variant) and prompt format.
"""

from __future__ import annotations

import atexit
import os
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from auditor.fleet.backends import (
    Backend,
    BackendError,
    ChatMessage,
    ChatRequest,
    Generation,
    TokenLogprob,
    TopLogprob,
    backends,
)
from auditor.fleet.spec import DEFAULT_NOISE, FleetMember

if TYPE_CHECKING:
    from llama_cpp import Llama

#: Context size of every fleet model (the longest core probe is about 1,500 tokens).
N_CTX = 2048
#: Completion tokens when the request does not say, as the reference engine does.
DEFAULT_MAX_TOKENS = 256
#: Threads per model call; `AUDITOR_FLEET_THREADS` overrides (the reference runs beside us).
THREADS_ENV = "AUDITOR_FLEET_THREADS"

MODEL_LOCK = threading.RLock()
_MODELS: dict[tuple[str, int], Llama] = {}


def fleet_threads() -> int:
    value = os.environ.get(THREADS_ENV)
    return max(1, int(value)) if value else os.cpu_count() or 1


def shared_model(path: Path, n_ctx: int = N_CTX) -> Llama:
    """The process's one `Llama` for this weights file, loaded on first use."""
    from llama_cpp import Llama

    key = (str(Path(path).resolve()), n_ctx)
    llm = _MODELS.get(key)  # no lock on the fast path: it is held through every generation
    if llm is not None:
        return llm
    with MODEL_LOCK:
        llm = _MODELS.get(key)
        if llm is None:
            try:
                llm = Llama(
                    model_path=key[0],
                    n_ctx=n_ctx,
                    n_threads=fleet_threads(),
                    # llama-cpp-python would use every core for prompts whatever n_threads
                    # says; two processes doing that on 2 cores spin-wait each other to a crawl
                    n_threads_batch=fleet_threads(),
                    logits_all=True,  # per-token logprobs when asked
                    verbose=False,
                )
            except (ValueError, RuntimeError) as exc:
                raise RuntimeError(f"cannot load {path}: {exc}") from None
            _MODELS[key] = llm
        return llm


@atexit.register
def _close_models() -> None:
    """Free the cached models before interpreter teardown, when llama-cpp-python can still
    do it (later, its `__del__` finds its own module half gone and prints a traceback)."""
    if not MODEL_LOCK.acquire(timeout=1):
        return
    try:
        for llm in _MODELS.values():
            llm.close()
        _MODELS.clear()
    finally:
        MODEL_LOCK.release()


def raw_prompt(messages: list[ChatMessage]) -> str:
    """The conversation as plain 'User: ...' lines: what a server without the template sends."""
    lines = [f"{m.role.capitalize()}: {m.text()}" for m in messages]
    return "\n".join([*lines, "Assistant:"])


class _Noise:
    """A llama-cpp-python logits processor adding seeded Gaussian noise to every step's logits.

    llama-cpp-python runs it as the first sampler of the chain, on the candidates in token
    order, so temperature 0 picks the argmax of the noisy logits. The same noise goes into
    the model's stored logits row, which is what reported logprobs are computed from.
    """

    def __init__(self, llm: Llama, std: float, seed: int) -> None:
        self.llm = llm
        self.std = np.float32(std)
        self.rng = np.random.default_rng(seed)

    def __call__(self, input_ids: Any, logits: Any) -> Any:
        noise = self.rng.standard_normal(len(logits), dtype=np.float32) * self.std
        row = self.llm.n_tokens - 1
        if 0 <= row < self.llm.scores.shape[0]:
            self.llm.scores[row, : len(noise)] += noise
        return logits + noise


@backends.register("llama")
class LlamaBackend(Backend):
    """The packaged SmolLM2 GGUF (or `model_path`) with GPU-like logits noise."""

    blocking = True

    def __init__(
        self,
        model_path: Path | str | None = None,
        *,
        n_ctx: int = N_CTX,
        noise: float = DEFAULT_NOISE,
        perturb_scale: float | None = None,
        perturb_seed: int = 0,
        perturb_tensors: str | None = None,
    ) -> None:
        if model_path is None:
            from auditor.providers.llama_cpp import packaged_model_path

            model_path = packaged_model_path()
        self.model_path = Path(model_path)
        self.n_ctx = n_ctx
        self.noise = noise
        self.perturb_scale = perturb_scale  # None: variants.DEFAULT_PERTURB_SCALE
        self.perturb_seed = perturb_seed
        self.perturb_tensors = perturb_tensors  # None: variants.PERTURB_TENSORS
        self._seeds = random.Random(f"llama/{self.model_path.name}")

    def generate(self, request: ChatRequest) -> Generation:
        return self.run(request, self.model_path, self.noise, self._seeds.getrandbits(63))

    def bind(self, member: FleetMember, seed: int) -> Backend:
        return MemberModel(self, member, seed)

    def truncate(self, messages: list[ChatMessage], budget: int) -> list[ChatMessage]:
        """Keep the last `budget` tokens of the messages' text (the template's come on top)."""
        llm = shared_model(self.model_path, self.n_ctx)
        kept: list[ChatMessage] = []
        for message in reversed(messages):
            tokens = llm.tokenize(message.text().encode(), add_bos=False, special=False)
            if len(tokens) <= budget:
                kept.append(message)
                budget -= len(tokens)
                continue
            if budget > 0:
                tail = llm.detokenize(tokens[-budget:]).decode("utf-8", errors="ignore")
                kept.append(message.model_copy(update={"content": tail}))
            break
        return list(reversed(kept)) or [messages[-1]]

    def run(
        self,
        request: ChatRequest,
        weights: Path,
        noise: float,
        noise_seed: int,
        raw_template: bool = False,
    ) -> Generation:
        """One completion of `request` on `weights`, holding the process's model lock."""
        llm = shared_model(weights, self.n_ctx)
        top = request.top_logprobs or 0
        stops = request.stop_list()
        sampling: dict[str, Any] = {
            "temperature": 1.0 if request.temperature is None else request.temperature,
            "top_p": 1.0 if request.top_p is None else request.top_p,
            "top_k": 0,
            "min_p": 0.0,
            "repeat_penalty": 1.0,
            "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
            "seed": request.seed,
        }
        with MODEL_LOCK:
            llm.reset()
            if noise > 0:
                sampling["logits_processor"] = [_Noise(llm, noise, noise_seed)]
            try:
                if raw_template:
                    result = llm.create_completion(
                        prompt=raw_prompt(request.messages),
                        stop=[*stops, "\nUser:"],
                        logprobs=top if request.logprobs else None,
                        **sampling,
                    )
                    choice = result["choices"][0]
                    text = choice["text"]
                    pairs = _completion_logprobs(choice.get("logprobs"))
                else:
                    result = llm.create_chat_completion(
                        messages=[{"role": m.role, "content": m.text()} for m in request.messages],
                        stop=stops or None,
                        logprobs=request.logprobs,
                        top_logprobs=top if request.logprobs else None,
                        **sampling,
                    )
                    choice = result["choices"][0]
                    text = choice["message"].get("content") or ""
                    pairs = _chat_logprobs(choice.get("logprobs"))
            except ValueError as exc:  # the prompt does not fit the context
                raise BackendError(400, str(exc), "context_length_exceeded") from None
        usage = result.get("usage") or {}
        logprobs = _align(pairs, text, top) if request.logprobs else None
        return Generation(
            text=text,
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            logprobs=logprobs,
        )


class MemberModel(Backend):
    """One member's view of a `LlamaBackend`: its weights, prompt format and noise.

    `quantized` members run on a requantized file, `variant_mix` members send a fraction of
    their requests to the perturbed one, `wrong_template` members format a fraction of them
    as raw text. Variant files are built (once, cached) and loaded when the fleet starts.
    Calls go through the parent's single worker thread.
    """

    blocking = True

    def __init__(self, parent: LlamaBackend, member: FleetMember, seed: int) -> None:
        # Imported here, so that `python -m auditor.fleet.variants` finds it not yet imported.
        from auditor.fleet.variants import (
            DEFAULT_PERTURB_SCALE,
            PERTURB_TENSORS,
            perturb,
            qtype_for_bits,
            requantize,
        )

        self.parent = parent
        self.member = member
        strength = member.effective_strength()
        source = parent.model_path
        self.weights = source
        self.alternate: Path | None = None
        self.alternate_share = 0.0
        self.raw_share = strength if member.fault == "wrong_template" else 0.0
        if member.fault == "quantized":
            self.weights = requantize(source, qtype_for_bits(strength))
        elif member.fault == "variant_mix":
            scale = parent.perturb_scale or DEFAULT_PERTURB_SCALE
            tensors = parent.perturb_tensors or PERTURB_TENSORS
            self.alternate = perturb(source, scale, parent.perturb_seed, tensors=tensors)
            self.alternate_share = strength
        self.rng = random.Random(f"{seed}/{member.name}/model")
        for path in (self.weights, self.alternate):
            if path is not None:
                shared_model(path, parent.n_ctx)

    def generate(self, request: ChatRequest) -> Generation:
        # Decided in the worker thread, one request at a time: the draws stay in order.
        alternate = self.alternate is not None and self.rng.random() < self.alternate_share
        raw = self.rng.random() < self.raw_share
        weights = self.alternate if alternate and self.alternate else self.weights
        seed = self.rng.getrandbits(63)
        return self.parent.run(request, weights, self.member.noise, seed, raw_template=raw)

    def truncate(self, messages: list[ChatMessage], budget: int) -> list[ChatMessage]:
        return self.parent.truncate(messages, budget)

    def _worker(self) -> ThreadPoolExecutor:
        return self.parent._worker()

    def close(self) -> None:
        """The parent owns the worker thread and closes it."""


def _chat_logprobs(data: dict[str, Any] | None) -> list[tuple[str, float, list[tuple[str, float]]]]:
    entries = (data or {}).get("content") or []
    return [
        (
            e["token"],
            float(e["logprob"]),
            [(a["token"], float(a["logprob"])) for a in e.get("top_logprobs") or []],
        )
        for e in entries
    ]


def _completion_logprobs(
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


def _align(
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
