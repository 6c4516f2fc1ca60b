"""The fleet's model backend: the packaged GGUF, or a variant of it, through llama-cpp-python.

It answers the way the reference engine (`auditor.providers.llama_cpp`) does, so that an
honest member differs from the reference only by the planted numeric noise:

- the GGUF's own chat template (`create_chat_completion`), plain temperature/top-p
  sampling (top_k=0, min_p=0, repeat_penalty=1), `reset()` before every call (a reused
  prompt prefix changes the logits, by up to 0.1 for this Q4_1 model, enough to change a
  greedy answer: the planted noise stays the only difference), 256 completion tokens when
  none are asked;
- the noise: before every sampled token, Gaussian noise of std `noise` is added to the
  logits (a custom llama.cpp sampler, seeded per request). Real GPU serving never matches a
  reference bit for bit, even at temperature 0 (batching, kernels, reduction order); this is
  that. The noise is also written into the stored logits, so reported logprobs carry it.

Answers are told while they are generated: a second logits processor (`_Streamer`) hands
the text produced so far to the caller's `on_text` before each token, holding back what
could still turn out to be the start of a stop string.

The backend also serves legacy text completions (`complete`, POST /v1/completions), which a
trusted endpoint reference uses to score a given continuation: the prompt is tokenized as
written (special tokens parsed, no BOS added, as the chat template's prompt is), evaluated
on the member's weights, and each prompt token's logprob is read from the logits of the
position before it, with the same noise as generated tokens get.

The machine has 2 cores: each weights file is loaded once per process (`shared_model`) and
every model call in the process holds one lock (`MODEL_LOCK`), whichever member or weights
it serves. Members see the backend through `bind`, which gives each its weights (the
reference, a requantized or a perturbed variant) and prompt format.
"""

from __future__ import annotations

import atexit
import codecs
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
    CompletionLogprobs,
    Generation,
    TextCallback,
    TextCompletion,
    TextCompletionRequest,
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
#: The raw prompt format's stop: the model starting the user's next turn.
RAW_STOP = "\nUser:"
#: Prompt positions scored at once (a row of logits is 49,152 floats).
_SCORE_ROWS = 128

MODEL_LOCK = threading.RLock()
_MODELS: dict[tuple[str, int, bool], Llama] = {}


def fleet_threads() -> int:
    value = os.environ.get(THREADS_ENV)
    return max(1, int(value)) if value else os.cpu_count() or 1


def shared_model(path: Path, n_ctx: int = N_CTX, logits_all: bool = False) -> Llama:
    """The process's one `Llama` for this weights file, loaded on first use; a second one
    keeps the logits of every position, for the requests that ask for logprobs (keeping
    them makes prompt evaluation about 40% slower, so plain requests go without)."""
    from llama_cpp import Llama

    key = (str(Path(path).resolve()), n_ctx, logits_all)
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
                    logits_all=logits_all,
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


class _Streamer:
    """A logits processor that tells the answer's text as it grows; it changes no logit.

    llama-cpp-python calls it before sampling each token with the tokens so far (prompt,
    then the answer's). The first call records the prompt's length and reports "" (the
    prompt was accepted); each later one detokenizes the answer so far as llama-cpp-python
    does for the final text (bytes, incomplete UTF-8 at the end ignored) and reports what is
    new, except the last `len(longest stop) - 1` characters and anything from a stop string
    on: what it reports is therefore always a prefix of the final text. It runs inside a
    ctypes callback, where an exception would only be printed: any error (the server's event
    loop gone, say) silences it and generation goes on.
    """

    def __init__(self, llm: Llama, on_text: TextCallback, stops: list[str]) -> None:
        self.llm = llm
        self.on_text: TextCallback | None = on_text
        self.stops = [s for s in stops if s]
        self.holdback = max((len(s) - 1 for s in self.stops), default=0)
        self.prompt_len: int | None = None
        self.sent = 0

    def __call__(self, input_ids: Any, logits: Any) -> Any:
        if self.on_text is not None:
            try:
                self._report(input_ids)
            except Exception:
                self.on_text = None
        return logits

    def _report(self, input_ids: Any) -> None:
        assert self.on_text is not None
        if self.prompt_len is None:
            self.prompt_len = len(input_ids)
            self.on_text("")
            return
        answer = [int(t) for t in input_ids[self.prompt_len :]]
        text = self.llm.detokenize(answer).decode("utf-8", errors="ignore")
        end = len(text) - self.holdback
        for stop in self.stops:
            found = text.find(stop)
            if found >= 0:
                end = min(end, found)
        if end > self.sent:
            piece, self.sent = text[self.sent : end], end
            self.on_text(piece)


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

    def generate(self, request: ChatRequest, on_text: TextCallback | None = None) -> Generation:
        seed = self._seeds.getrandbits(63)
        return self.run(request, self.model_path, self.noise, seed, on_text=on_text)

    def complete(self, request: TextCompletionRequest) -> TextCompletion:
        seed = self._seeds.getrandbits(63)
        return self.run_completion(request, self.model_path, self.noise, seed)

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
        on_text: TextCallback | None = None,
    ) -> Generation:
        """One completion of `request` on `weights`, holding the process's model lock.

        `on_text`, when given, is told the answer's text as it is generated (`_Streamer`).
        """
        llm = shared_model(weights, self.n_ctx, logits_all=bool(request.logprobs))
        top = request.top_logprobs or 0
        stops = request.stop_list()
        sampling = _sampling(
            request.temperature,
            request.top_p,
            request.max_tokens or DEFAULT_MAX_TOKENS,
            request.seed,
        )
        with MODEL_LOCK:
            llm.reset()
            processors: list[Any] = []
            if noise > 0:
                processors.append(_Noise(llm, noise, noise_seed))
            if on_text is not None:
                # the chat template's own stop is its end-of-turn token's text
                ends = [*stops, RAW_STOP if raw_template else _eos_text(llm)]
                processors.append(_Streamer(llm, on_text, ends))
            if processors:
                sampling["logits_processor"] = processors
            try:
                if raw_template:
                    result = llm.create_completion(
                        prompt=raw_prompt(request.messages),
                        stop=[*stops, RAW_STOP],
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

    def run_completion(
        self, request: TextCompletionRequest, weights: Path, noise: float, noise_seed: int
    ) -> TextCompletion:
        """One legacy text completion of `request` on `weights`, holding the model lock.

        The prompt is tokenized as written (special tokens parsed, no BOS added). With
        `max_tokens` 0 it is only evaluated; otherwise llama-cpp-python continues it with the
        chat path's sampling and noise. With `echo` and `logprobs`, the prompt's tokens are
        scored from the stored logits: row i predicts token i + 1, plus fresh noise of the
        member's std (seeded apart from the generation's), and the first token gets None.
        """
        llm = shared_model(weights, self.n_ctx, logits_all=True)
        prompt = request.prompt_text()
        top = request.logprobs
        scored: list[tuple[float | None, dict[str, float] | None]] = []
        pieces: list[str] = []
        pairs: list[tuple[str, float, list[tuple[str, float]]]] = []
        text, finish, generated = "", "length", 0
        with MODEL_LOCK:
            tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
            if not tokens:
                raise BackendError(400, "The prompt is empty.", param="prompt")
            needed = len(tokens) + (1 if request.max_tokens else 0)
            if needed > llm.n_ctx():
                raise BackendError(
                    400,
                    f"The prompt has {len(tokens)} tokens: more than this model's context of "
                    f"{llm.n_ctx()} tokens allows.",
                    "context_length_exceeded",
                    param="prompt",
                )
            llm.reset()
            if request.max_tokens:
                sampling = _sampling(
                    request.temperature, request.top_p, request.max_tokens, request.seed
                )
                if noise > 0:
                    sampling["logits_processor"] = [_Noise(llm, noise, noise_seed)]
                try:
                    result = llm.create_completion(
                        prompt=tokens, stop=request.stop_list(), logprobs=top, **sampling
                    )
                except ValueError as exc:
                    raise BackendError(
                        400, str(exc), "context_length_exceeded", param="prompt"
                    ) from None
                choice = result["choices"][0]
                text = choice["text"]
                finish = "length" if choice.get("finish_reason") == "length" else "stop"
                generated = int((result.get("usage") or {}).get("completion_tokens") or 0)
                if top is not None:
                    pairs = _completion_logprobs(choice.get("logprobs"))
            else:
                llm.eval(tokens)
            if request.echo and top is not None:
                # the generation left the prompt's rows of logits as they were
                scored = _score_prompt(llm, tokens, top, noise, noise_seed)
                pieces = _token_texts(llm, tokens)

        echoed = ""
        if request.echo:
            # the tokens' texts are the prompt's; were they not, they are what is echoed, so
            # that the offsets stay true to the text
            echoed = "".join(pieces) if pieces else prompt
        logprobs = None
        if top is not None:
            entries: list[tuple[str, float | None, dict[str, float] | None]] = [
                (piece, logprob, alternatives)
                for piece, (logprob, alternatives) in zip(pieces, scored, strict=True)
            ]
            entries += [
                (t.token, t.logprob, {a.token: a.logprob for a in t.top_logprobs})
                for t in _align(pairs, text, top)
            ]
            offsets, at = [], 0
            for piece, _, _ in entries:
                offsets.append(at)
                at += len(piece)
            logprobs = CompletionLogprobs(
                tokens=[e[0] for e in entries],
                token_logprobs=[e[1] for e in entries],
                top_logprobs=[e[2] for e in entries],
                text_offset=offsets,
            )
        return TextCompletion(
            text=echoed + text,
            finish_reason="length" if finish == "length" else "stop",
            prompt_tokens=len(tokens),
            completion_tokens=generated,
            logprobs=logprobs,
        )


def _sampling(
    temperature: float | None, top_p: float | None, max_tokens: int, seed: int | None
) -> dict[str, Any]:
    """llama-cpp-python's arguments for plain temperature/top-p sampling, as the reference."""
    return {
        "temperature": 1.0 if temperature is None else temperature,
        "top_p": 1.0 if top_p is None else top_p,
        "top_k": 0,
        "min_p": 0.0,
        "repeat_penalty": 1.0,
        "max_tokens": max_tokens,
        "seed": seed,
    }


def _eos_text(llm: Llama) -> str:
    eos = llm.token_eos()
    if eos < 0:
        return ""
    return llm.detokenize([eos], special=True).decode("utf-8", errors="ignore")


def _score_prompt(
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


def _token_texts(llm: Llama, tokens: list[int]) -> list[str]:
    """The tokens' texts, concatenating to the decoded prompt: a character split over
    several tokens belongs to the one that completes it (the others get "")."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    texts = [decoder.decode(llm.detokenize([t], special=True)) for t in tokens]
    rest = decoder.decode(b"", final=True)
    if rest:
        texts[-1] += rest
    return texts


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

    def generate(self, request: ChatRequest, on_text: TextCallback | None = None) -> Generation:
        # Decided in the worker thread, one request at a time: the draws stay in order.
        alternate = self.alternate is not None and self.rng.random() < self.alternate_share
        raw = self.rng.random() < self.raw_share
        weights = self.alternate if alternate and self.alternate else self.weights
        seed = self.rng.getrandbits(63)
        return self.parent.run(
            request, weights, self.member.noise, seed, raw_template=raw, on_text=on_text
        )

    def complete(self, request: TextCompletionRequest) -> TextCompletion:
        """The member's weights (a `variant_mix` member's share goes to the perturbed ones)
        and noise; the prompt is the caller's text, so no prompt format fault applies."""
        alternate = self.alternate is not None and self.rng.random() < self.alternate_share
        weights = self.alternate if alternate and self.alternate else self.weights
        seed = self.rng.getrandbits(63)
        return self.parent.run_completion(request, weights, self.member.noise, seed)

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
