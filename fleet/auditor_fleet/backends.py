"""What answers behind a fleet member: a `Backend` turns a chat request into a generation.

The server knows nothing about how text is produced. A backend implements one method,
`generate`; a backend that is slow or CPU-bound sets `blocking = True` and the server then
runs it on the backend's single worker thread, so calls are serialized (one model in memory,
one generation at a time) and the event loop keeps serving other members meanwhile.

`generate` may report the answer's text while it is produced (`on_text`), which the server
streams as it comes; a backend that does not simply answers at the end. A backend may also
serve the legacy text completions (`complete`, POST /v1/completions); by default it refuses
them with a 404.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from itertools import chain, islice
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from auditor.plugins import Registry

if TYPE_CHECKING:
    from auditor_fleet.spec import FleetMember, FleetSpec


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        """The message's text; content parts other than text are ignored."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")


class Sampling(BaseModel):
    """A request's sampling fields: OpenAI's temperature, top_p, presence_penalty and
    frequency_penalty (0: off), and those that vLLM and llama.cpp's server take beyond them:
    `top_k` (0 or -1: off), `min_p` (0: off) and `repetition_penalty` (1: off; llama.cpp's
    name `repeat_penalty` is taken too). Left out, these leave the distribution whole, as the
    reference engine samples it."""

    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    top_k: int | None = Field(default=None, ge=-1)
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    repetition_penalty: float | None = Field(default=None, gt=0.0)
    repeat_penalty: float | None = Field(default=None, gt=0.0)

    @model_validator(mode="after")
    def _merge_repeat_penalty(self) -> Self:
        if self.repetition_penalty is None and self.repeat_penalty is not None:
            self.repetition_penalty = self.repeat_penalty
        return self

    def samples(self) -> bool:
        """Whether the request samples: temperature above 0, or none said (the model
        backend's default, 1)."""
        return self.temperature is None or self.temperature > 0

    def with_sampler(self, settings: dict[str, float]) -> Self:
        """The request with `settings` (llama.cpp's names: top_k, top_p, min_p,
        repeat_penalty) in place of its own, if it samples; unchanged if it is greedy."""
        if not settings or not self.samples():
            return self
        update: dict[str, Any] = {}
        if "top_k" in settings:
            update["top_k"] = int(settings["top_k"])
        if "top_p" in settings:
            update["top_p"] = settings["top_p"]
        if "min_p" in settings:
            update["min_p"] = settings["min_p"]
        if "repeat_penalty" in settings:
            update["repetition_penalty"] = settings["repeat_penalty"]
            update["repeat_penalty"] = settings["repeat_penalty"]
        return self.model_copy(update=update)


#: The most choices (`n`) a chat request may ask for.
MAX_CHOICES = 16
#: The `response_format` types of the OpenAI API.
_FORMATS = ("text", "json_object", "json_schema")


class ChatRequest(Sampling):
    """The body of POST /v1/chat/completions, as far as the fleet cares.

    Unknown parameters are kept (`extra="allow"`) so a backend may read them. The effort
    level of a reasoning model comes in `reasoning_effort` (OpenAI, vLLM) or
    `reasoning.effort` (OpenRouter); a router's upstream in `provider` (OpenRouter's
    `{"only": [...], "order": [...], "allow_fallbacks": ...}`).
    """

    model_config = ConfigDict(extra="allow")

    model: str = ""
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    seed: int | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    stop: str | list[str] | None = None
    n: int = Field(default=1, ge=1, le=MAX_CHOICES)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None  # offered as `auditor_fleet.tools` says
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    reasoning_effort: str | None = None
    reasoning: dict[str, Any] | None = None
    provider: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _merge_max_tokens(self) -> ChatRequest:
        # Newer clients send max_completion_tokens; backends read only max_tokens.
        if self.max_tokens is None and self.max_completion_tokens is not None:
            self.max_tokens = self.max_completion_tokens
        return self

    @field_validator("response_format")
    @classmethod
    def _known_format(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        if value.get("type") not in _FORMATS:
            raise ValueError(f"type must be one of {', '.join(_FORMATS)}")
        if value["type"] == "json_schema":
            spec = value.get("json_schema")
            if not isinstance(spec, dict) or not isinstance(spec.get("schema", {}), dict):
                raise ValueError("json_schema must be an object whose schema is an object")
        return value

    def choice(self, index: int) -> ChatRequest:
        """The request for choice `index` of its `n`, sampled on its own: one choice, and
        past the first a seed of its own derived from the request's (none stays none), so
        that a seeded request's choices differ and each repeats."""
        if index == 0 or self.seed is None:
            return self.model_copy(update={"n": 1})
        digest = hashlib.blake2b(f"{self.seed}/{index}".encode(), digest_size=4).digest()
        return self.model_copy(update={"n": 1, "seed": int.from_bytes(digest, "big")})

    def effort(self) -> str | None:
        """The reasoning effort level asked for (None: the model's default)."""
        if self.reasoning_effort is not None:
            return self.reasoning_effort
        level = (self.reasoning or {}).get("effort")
        return level if isinstance(level, str) else None

    def llama_response_format(self) -> dict[str, Any] | None:
        """`response_format` as llama-cpp-python takes it: `{"type": "json_object"}`, with
        the schema beside the type (`"schema"`) for OpenAI's `json_schema` form; None for
        `text` or none."""
        fmt = self.response_format
        if fmt is None or fmt["type"] == "text":
            return None
        if fmt["type"] == "json_object":
            schema = fmt.get("schema")  # llama-cpp-python's own form, taken as it is
        else:
            schema = fmt["json_schema"].get("schema")
        return {"type": "json_object", "schema": schema} if schema else {"type": "json_object"}

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else [s for s in self.stop if s]


class TopLogprob(BaseModel):
    token: str
    logprob: float


class TokenLogprob(BaseModel):
    token: str
    logprob: float
    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class Generation(BaseModel):
    """A backend's answer. When `logprobs` is set, its tokens concatenate to `text`.

    `tool_calls` (OpenAI format) are set by the server from the text of an answer to a
    request with tools (`auditor_fleet.tools`); `text` is then what is outside the calls.
    `reasoning` is a reasoning member's reasoning, sent apart from `text`, the answer
    (`auditor_fleet.reasoning`); None for a plain model's answer.
    """

    text: str
    finish_reason: Literal["stop", "length", "tool_calls"] = "stop"
    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)
    logprobs: list[TokenLogprob] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    reasoning: str | None = None


class TextCompletionRequest(Sampling):
    """The body of POST /v1/completions (the legacy text completions), as far as the fleet cares.

    `prompt` is one string (a list holding one string is taken too). `max_tokens` may be 0
    only with `echo`: the answer is then the prompt alone, scored when `logprobs` is set.
    `logprobs` is the number of top alternatives per token (0 to 20), as in the OpenAI API.
    """

    model_config = ConfigDict(extra="allow")

    model: str = ""
    prompt: str | list[str]
    max_tokens: int = Field(default=16, ge=0)
    seed: int | None = None
    stop: str | list[str] | None = None
    logprobs: int | None = Field(default=None, ge=0, le=20)
    echo: bool = False
    n: int = Field(default=1, ge=1, le=1)
    stream: bool = False
    provider: dict[str, Any] | None = None  # a router's upstream, as in `ChatRequest`

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value: str | list[str]) -> str:
        if isinstance(value, str):
            return value
        if len(value) != 1:
            raise ValueError("only one prompt per request is served")
        return value[0]

    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else [s for s in self.stop if s]


class CompletionLogprobs(BaseModel):
    """The legacy API's logprobs: one entry per token, `tokens` concatenating to the text.

    With `echo`, the prompt's tokens come first; the very first has no logprob (None), as
    nothing predicts it. `text_offset` is each token's character offset in the text.
    """

    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]


class TextCompletion(BaseModel):
    """A backend's text completion: `text` is the echoed prompt (with `echo`) + the answer."""

    text: str
    finish_reason: Literal["stop", "length"] = "stop"
    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)
    logprobs: CompletionLogprobs | None = None


class BackendError(Exception):
    """A request the backend refuses; the server answers it as an OpenAI error."""

    def __init__(
        self, status: int, message: str, code: str | None = None, param: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param


#: Called with each new piece of an answer's text while it is generated (see `generate`).
TextCallback = Callable[[str], None]

_Result = TypeVar("_Result")


class Backend(ABC):
    """Produces the text a fleet member answers with.

    One instance per backend name serves a whole fleet; `bind` gives each member its own
    view of it when the member's fault lives below the request (weights, prompt format).
    """

    #: True for slow or CPU-bound backends: calls then go through one worker thread.
    blocking: ClassVar[bool] = False

    _executor_lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def for_fleet(cls, spec: FleetSpec) -> Backend:
        """The one instance a fleet of `spec` shares (fleet-wide settings such as `n_ctx`
        are read here). Default: the backend with its defaults."""
        return cls()

    @abstractmethod
    def generate(self, request: ChatRequest, on_text: TextCallback | None = None) -> Generation:
        """Answer one chat request.

        A backend that can tell its answer while generating it calls `on_text` with each new
        piece of text (possibly from another thread). The pieces, concatenated, are always a
        prefix of the final `Generation.text`; the server sends the rest at the end. An empty
        piece says that the prompt was accepted and generation has begun. A backend may
        ignore `on_text` and answer at the end only.
        """

    def complete(self, request: TextCompletionRequest) -> TextCompletion:
        """Answer one legacy text completion (POST /v1/completions). Default: not served."""
        raise BackendError(
            404,
            "This provider serves chat completions only: use /v1/chat/completions.",
            "unsupported_endpoint",
        )

    def bind(self, member: FleetMember, seed: int) -> Backend:
        """The backend as `member` uses it (`seed` is the fleet's). Default: shared as is."""
        return self

    def count_prompt(self, request: ChatRequest) -> int | None:
        """The prompt tokens an honest member would bill for `request` as it is (its
        `usage.prompt_tokens`), without generating; None when the backend cannot tell.
        A blocking backend's count runs on its worker (`acount_prompt`)."""
        return None

    def truncate(self, messages: list[ChatMessage], budget: int) -> list[ChatMessage]:
        """The conversation cut to its last `budget` tokens, as a short context would cut it.

        Tokens are this backend's: whitespace words here, real tokens for a model backend.
        """
        return keep_last_words(messages, budget)

    async def agenerate(
        self, request: ChatRequest, on_text: TextCallback | None = None
    ) -> Generation:
        """Call `generate` without stalling the event loop for a blocking backend."""
        if on_text is None:
            return await self._call(partial(self.generate, request))
        return await self._call(partial(self.generate, request, on_text))

    async def acomplete(self, request: TextCompletionRequest) -> TextCompletion:
        """Call `complete` as `agenerate` calls `generate`."""
        return await self._call(partial(self.complete, request))

    async def acount_prompt(self, request: ChatRequest) -> int | None:
        """Call `count_prompt` as `agenerate` calls `generate`."""
        return await self._call(partial(self.count_prompt, request))

    async def acall(self, call: Callable[[], _Result]) -> _Result:
        """Run `call`, which calls this backend's blocking methods (`generate` several times,
        say), where those run: on the worker thread of a blocking backend."""
        return await self._call(call)

    async def _call(self, call: Callable[[], _Result]) -> _Result:
        if not self.blocking:
            return call()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._worker(), call)

    def _worker(self) -> ThreadPoolExecutor:
        executor: ThreadPoolExecutor | None = self.__dict__.get("_executor")
        if executor is None:
            with self._executor_lock:
                executor = self.__dict__.get("_executor")
                if executor is None:
                    name = f"fleet-{type(self).__name__}"
                    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
                    self.__dict__["_executor"] = executor
        return executor

    def close(self) -> None:
        """Release resources (the worker thread); the fleet calls this when it stops."""
        executor: ThreadPoolExecutor | None = self.__dict__.pop("_executor", None)
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


backends = Registry[type[Backend]]("fleet backend")

# 64 words, so that one digest byte picks one word without bias.
_WORDS = (
    "the a model answer is of and to in that it for on with as was at by this be from "
    "result value number token reply text step first second then so because which data "
    "shows clear simple small large true false yes no more less each every some many "
    "here there now later again also only just very quite word line point part"
)
_VOCAB: tuple[str, ...] = tuple(_WORDS.split())

_SUM = re.compile(r"(-?\d+)\s*\+\s*(-?\d+)")
# Floor on the replacement probability used for reported logprobs, so they stay finite.
_LOGPROB_FLOOR = 0.05


@backends.register("echo")
class EchoBackend(Backend):
    """Deterministic, model-free text: instant, and reproducible where a model would be.

    Tokens are whitespace-separated words. The greedy answer (temperature 0 or None) is a
    function of the messages alone: 8 to 40 words from a 64-word vocabulary picked by a
    BLAKE2b digest of the messages. With temperature t > 0 each word is replaced by a random
    vocabulary word with probability p = min(1, t / 2) * top_p, and the length moves by up
    to 8p words; the randomness is seeded by (messages, seed, temperature) when the request
    has a seed, fresh otherwise. Reported logprobs follow that same model: the greedy word
    has log(1 - p + p/64), any other word log(p/64) (with p at least 0.05).

    `top_k` and `min_p` truncate that distribution before sampling, as a model server does:
    top_k k keeps the greedy word and k - 1 others (the vocabulary from position i on, the
    words the logprobs list as alternatives), min_p drops the other words when p/64 is below
    min_p times the greedy word's probability (so min_p 0.05 keeps an answer greedy up to
    p = 0.77), and the replacement probability becomes the kept words' share. Reported
    logprobs stay those of the whole distribution; `repetition_penalty` is ignored.

    If the last user message asks to "Answer with one number" about "A + B", the answer is
    the sum, so probes with a known answer score as correct.

    It answers at once, so it ignores `on_text` (a streamed answer comes whole, word by word),
    and it serves no text completions (/v1/completions answers 404).
    """

    def generate(self, request: ChatRequest, on_text: TextCallback | None = None) -> Generation:
        messages = request.messages
        texts = [m.text() for m in messages]
        prompt_tokens = self.count_prompt(request)
        digest = hashlib.blake2b(
            "\x1e".join(f"{m.role}\x1f{t}" for m, t in zip(messages, texts, strict=True)).encode(),
            digest_size=64,
        ).digest()

        temperature = request.temperature or 0.0
        p = min(1.0, temperature / 2) * (request.top_p if request.top_p is not None else 1.0)

        words = self._arithmetic(messages, texts)
        if words is None:
            words = [_VOCAB[b & 63] for b in digest[1 : 9 + digest[0] % 33]]
        greedy = words
        kept = self._kept_others(p, request.top_k, request.min_p)
        replace = p
        if kept is not None:  # a truncated distribution: the kept words' share
            share = (kept + 1) * p / 64
            replace = share / (1 - p + share) if kept else 0.0
        if replace > 0:
            rng = self._rng(digest, request.seed, temperature)
            if kept is None:
                words = [rng.choice(_VOCAB) if rng.random() < replace else w for w in greedy]
            else:
                words = [
                    rng.choice(_top_words(w, i, kept)) if rng.random() < replace else w
                    for i, w in enumerate(greedy)
                ]
            pool = _VOCAB if kept is None else _VOCAB[: kept + 1]
            shift = round(8 * replace)
            if shift and len(words) > 1:
                n = min(40, max(8, len(words) + rng.randint(-shift, shift)))
                extra = [rng.choice(pool) for _ in range(n - len(words))]
                words = (words + extra)[: max(n, 1)]

        finish: Literal["stop", "length"] = "stop"
        if request.max_tokens is not None and len(words) > request.max_tokens:
            words = words[: request.max_tokens]
            finish = "length"
        text = " ".join(words)
        for stop in request.stop_list():
            cut = text.find(stop)
            if cut >= 0:
                text, finish = text[:cut], "stop"
        pieces = split_tokens(text)

        logprobs = None
        if request.logprobs:
            logprobs = self._logprobs(pieces, greedy, max(p, _LOGPROB_FLOOR), request.top_logprobs)
        return Generation(
            text=text,
            finish_reason=finish,
            prompt_tokens=prompt_tokens,
            completion_tokens=len(pieces),
            logprobs=logprobs,
        )

    def count_prompt(self, request: ChatRequest) -> int:
        """Whitespace words of every message, and 4 per message for its role and markers."""
        messages = request.messages
        return sum(len(m.text().split()) for m in messages) + 4 * len(messages)

    @staticmethod
    def _kept_others(p: float, top_k: int | None, min_p: float | None) -> int | None:
        """How many words besides the greedy one `top_k` and `min_p` keep (None: all 63)."""
        kept = 63
        if top_k is not None and 0 < top_k < 64:
            kept = top_k - 1
        if min_p and p / 64 < min_p * (1 - p + p / 64):
            kept = 0
        return None if kept == 63 else kept

    @staticmethod
    def _arithmetic(messages: list[ChatMessage], texts: list[str]) -> list[str] | None:
        last_user = next(
            (
                t
                for m, t in zip(reversed(messages), reversed(texts), strict=True)
                if m.role == "user"
            ),
            "",
        )
        if "Answer with one number" not in last_user:
            return None
        match = _SUM.search(last_user)
        return [str(int(match[1]) + int(match[2]))] if match else None

    @staticmethod
    def _rng(digest: bytes, seed: int | None, temperature: float) -> random.Random:
        if seed is None:
            return random.Random()
        return random.Random(f"{digest.hex()}/{seed}/{temperature!r}")

    @staticmethod
    def _logprobs(
        pieces: list[str], greedy: list[str], p: float, top: int | None
    ) -> list[TokenLogprob]:
        likely = math.log(1 - p + p / 64)
        unlikely = math.log(p / 64)
        k = top or 0
        out = []
        for i, piece in enumerate(pieces):
            lead = piece[: len(piece) - len(piece.lstrip())]
            best = greedy[i] if i < len(greedy) else piece.strip()
            chosen = likely if piece.strip() == best else unlikely
            alternatives: list[TopLogprob] = []
            if k:
                others = (w for w in chain(_VOCAB[i % 64 :], _VOCAB[: i % 64]) if w != best)
                alternatives = [TopLogprob(token=lead + best, logprob=likely)]
                alternatives += [
                    TopLogprob(token=lead + w, logprob=unlikely) for w in islice(others, k - 1)
                ]
                if all(a.token != piece for a in alternatives):
                    alternatives[-1] = TopLogprob(token=piece, logprob=chosen)
            out.append(TokenLogprob(token=piece, logprob=chosen, top_logprobs=alternatives))
        return out


def _top_words(greedy: str, position: int, others: int) -> list[str]:
    """The greedy word and the `others` next likeliest at `position` (the vocabulary from
    there on, as the reported alternatives list them)."""
    i = position % 64
    rest = (w for w in chain(_VOCAB[i:], _VOCAB[:i]) if w != greedy)
    return [greedy, *islice(rest, others)]


def split_tokens(text: str) -> list[str]:
    """Whitespace words, each carrying the whitespace before it, concatenating to `text`."""
    pieces = re.findall(r"\s*\S+", text)
    rest = len(text) - sum(len(p) for p in pieces)
    if rest:
        pieces.append(text[-rest:])
    return pieces


def keep_last_words(messages: list[ChatMessage], budget: int) -> list[ChatMessage]:
    """Left-truncate the conversation to its last `budget` words, as a short context would."""
    kept: list[ChatMessage] = []
    for message in reversed(messages):
        words = message.text().split()
        if len(words) <= budget:
            kept.append(message)
            budget -= len(words)
            continue
        if budget > 0:
            kept.append(message.model_copy(update={"content": " ".join(words[-budget:])}))
        break
    return list(reversed(kept)) or [messages[-1]]
