"""The fleet's model backend: the packaged GGUF, or a variant of it, through llama-cpp-python.

It answers the way the reference engine (`auditor.providers.llama_cpp`) does, so that an
honest member differs from the reference only by the planted numeric noise:

- the GGUF's own chat template (`create_chat_completion`), plain temperature/top-p
  sampling (top_k=0, min_p=0, repeat_penalty=1, unless the request sends `top_k`, `min_p`
  or `repetition_penalty`, which are then llama.cpp's), prompts evaluated as the reference
  evaluates them (`auditor.providers.llama_prefix`: a cached prompt reused without changing
  a logit, so the planted noise stays the only difference), 256 completion tokens when none
  are asked;
- the noise: before every sampled token, Gaussian noise of std `noise` is added to the
  logits (a custom llama.cpp sampler, seeded per request). Real GPU serving never matches a
  reference bit for bit, even at temperature 0 (batching, kernels, reduction order); this is
  that. The noise is also written into the stored logits, so reported logprobs carry it.
  A request with a `seed` gets noise drawn from that seed and the request itself
  (`member_model.request_seed`), so that it is answered alike every time, as a seeded
  request to a real server is;
- `response_format` (json_object, or OpenAI's json_schema converted to llama-cpp-python's
  `{"type": "json_object", "schema": ...}`, `ChatRequest.llama_response_format`) becomes
  llama-cpp-python's grammar; presence and frequency penalties go to its samplers.

Answers are told while they are generated: a second logits processor (`_Streamer`) hands
the text produced so far to the caller's `on_text` before each token, holding back what
could still turn out to be the start of a stop string.

The backend also serves legacy text completions (`complete`, POST /v1/completions), which a
trusted endpoint reference uses to score a given continuation: the prompt is tokenized as
written (special tokens parsed, no BOS added, as the chat template's prompt is), evaluated
on the member's weights, and each prompt token's logprob is read from the logits of the
position before it, with the same noise as generated tokens get (`llama_logprobs`).

Models are loaded and locked in `llama_model`. Members see the backend through `bind`,
which gives each a `member_model.MemberModel`: its weights (the reference, a requantized
or a perturbed variant) and prompt format.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from auditor_fleet.backends import (
    Backend,
    BackendError,
    ChatMessage,
    ChatRequest,
    CompletionLogprobs,
    Generation,
    Sampling,
    TextCallback,
    TextCompletion,
    TextCompletionRequest,
    backends,
)
from auditor_fleet.llama_logprobs import (
    align,
    chat_logprobs,
    completion_logprobs,
    score_prompt,
    token_texts,
)
from auditor_fleet.llama_model import MODEL_LOCK, N_CTX, RAW_STOP, raw_prompt, shared_model
from auditor_fleet.member_model import MemberModel, request_seed
from auditor_fleet.spec import DEFAULT_NOISE, FleetMember, FleetSpec

if TYPE_CHECKING:
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

#: Completion tokens when the request does not say, as the reference engine does.
DEFAULT_MAX_TOKENS = 256


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


def text_tokens(llm: Any, message: ChatMessage) -> list[int]:
    """The tokens of a message's text alone, without the chat template's: what
    `truncate_context` counts and keeps the last N of."""
    return list(llm.tokenize(message.text().encode(), add_bos=False, special=False))


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
        self._template: Jinja2ChatFormatter | None = None

    @classmethod
    def for_fleet(cls, spec: FleetSpec) -> LlamaBackend:
        """The packaged model with the fleet's context size (`FleetSpec.n_ctx`, else N_CTX)."""
        return cls(n_ctx=spec.n_ctx or N_CTX)

    def generate(self, request: ChatRequest, on_text: TextCallback | None = None) -> Generation:
        seed = request_seed("llama", request, self._seeds.getrandbits(63))
        return self.run(request, self.model_path, self.noise, seed, on_text=on_text)

    def complete(self, request: TextCompletionRequest) -> TextCompletion:
        seed = request_seed("llama", request, self._seeds.getrandbits(63))
        return self.run_completion(request, self.model_path, self.noise, seed)

    def bind(self, member: FleetMember, seed: int) -> Backend:
        return MemberModel(self, member, seed)

    def count_prompt(self, request: ChatRequest, weights: Path | None = None) -> int:
        """The prompt tokens `create_chat_completion` evaluates for `request`: the GGUF's chat
        template over its messages, tokenized as llama-cpp-python tokenizes it (special
        tokens parsed, no BOS added: the template writes its own). The variants keep the
        packaged file's vocabulary and template, so any of them (`weights`) counts alike."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        llm = shared_model(weights or self.model_path, self.n_ctx)
        with MODEL_LOCK:
            if self._template is None:
                # as llama-cpp-python builds its "chat_template.default" handler
                eos, bos = llm.token_eos(), llm.token_bos()
                self._template = Jinja2ChatFormatter(
                    template=llm.metadata["tokenizer.chat_template"],
                    eos_token=llm._model.token_get_text(eos) if eos != -1 else "",
                    bos_token=llm._model.token_get_text(bos) if bos != -1 else "",
                    stop_token_ids=[eos],
                )
            messages: Any = [{"role": m.role, "content": m.text()} for m in request.messages]
            formatted = self._template(messages=messages)
            text = formatted.prompt.encode("utf-8")
            return len(llm.tokenize(text, add_bos=not formatted.added_special, special=True))

    def truncate(self, messages: list[ChatMessage], budget: int) -> list[ChatMessage]:
        """Keep the last `budget` tokens of the messages' text (the template's come on top)."""
        llm = shared_model(self.model_path, self.n_ctx)
        kept: list[ChatMessage] = []
        for message in reversed(messages):
            tokens = text_tokens(llm, message)
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
        sampling = _sampling(request, request.max_tokens or DEFAULT_MAX_TOKENS, request.seed)
        with MODEL_LOCK:
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
                        grammar=_grammar(request.llama_response_format()),
                        **sampling,
                    )
                    choice = result["choices"][0]
                    text = choice["text"]
                    pairs = completion_logprobs(choice.get("logprobs"))
                else:
                    result = llm.create_chat_completion(
                        messages=[{"role": m.role, "content": m.text()} for m in request.messages],
                        stop=stops or None,
                        logprobs=request.logprobs,
                        top_logprobs=top if request.logprobs else None,
                        response_format=request.llama_response_format(),
                        **sampling,
                    )
                    choice = result["choices"][0]
                    text = choice["message"].get("content") or ""
                    pairs = chat_logprobs(choice.get("logprobs"))
            except ValueError as exc:  # the prompt does not fit the context
                raise BackendError(400, str(exc), "context_length_exceeded") from None
        usage = result.get("usage") or {}
        logprobs = align(pairs, text, top) if request.logprobs else None
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
                sampling = _sampling(request, request.max_tokens, request.seed)
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
                    pairs = completion_logprobs(choice.get("logprobs"))
            else:
                llm.eval(tokens)
            if request.echo and top is not None:
                # the generation left the prompt's rows of logits as they were
                scored = score_prompt(llm, tokens, top, noise, noise_seed)
                pieces = token_texts(llm, tokens)

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
                for t in align(pairs, text, top)
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


def _sampling(request: Sampling, max_tokens: int, seed: int | None) -> dict[str, Any]:
    """llama-cpp-python's arguments for the request's sampling: plain temperature/top-p, as
    the reference, unless it sends top_k, min_p or a repetition, presence or frequency
    penalty, which then go to llama.cpp's samplers as they are (top_k 0 or -1 is off). The
    penalties act at temperature 0 too, as in llama.cpp."""
    top_k = request.top_k if request.top_k is not None and request.top_k > 0 else 0
    return {
        "temperature": 1.0 if request.temperature is None else request.temperature,
        "top_p": 1.0 if request.top_p is None else request.top_p,
        "top_k": top_k,
        "min_p": request.min_p or 0.0,
        "repeat_penalty": request.repetition_penalty or 1.0,
        "presence_penalty": request.presence_penalty or 0.0,
        "frequency_penalty": request.frequency_penalty or 0.0,
        "max_tokens": max_tokens,
        "seed": seed,
    }


def _grammar(response_format: dict[str, Any] | None) -> Any:
    """The llama.cpp grammar llama-cpp-python's chat path builds for `response_format`, for
    the raw prompt format's plain completion (None: unconstrained)."""
    if response_format is None:
        return None
    from llama_cpp.llama_chat_format import _grammar_for_response_format

    return _grammar_for_response_format(response_format)  # type: ignore[arg-type]


def _eos_text(llm: Llama) -> str:
    eos = llm.token_eos()
    if eos < 0:
        return ""
    return llm.detokenize([eos], special=True).decode("utf-8", errors="ignore")
