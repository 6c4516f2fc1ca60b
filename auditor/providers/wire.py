"""OpenAI chat-completions wire format -> `CompletionResponse`: bodies, SSE streams, headers.

Pure parsing, no I/O and no clock, so every malformed input a provider can produce is a unit
test away. Shapes are checked with the `openai` package's pydantic types, with two deliberate
allowances, because they are behaviour worth recording rather than broken framing:

- `finish_reason` may be any string (engines say "eos", "abort", ...) or null; the value
  the provider sent is recorded as is.
- `usage` is read on its own into our `Usage`, so a provider that omits `total_tokens` still
  yields an answer; a usage of the wrong type is still a protocol error.

Whatever is decoded is made storable: NUL characters (which PostgreSQL text refuses) and lone
surrogates (valid JSON escapes that no UTF-8 column or output takes) become U+FFFD, and token
counts a database integer column cannot hold (negative, or 2**31 and over) are off-spec.
"""

from __future__ import annotations

import json
import re
from typing import Any, NoReturn

import httpx
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import BaseModel, ValidationError

from auditor.providers.context_length import context_overflow
from auditor.records import CompletionResponse, ErrorClass, Usage

MAX_BODY_BYTES = 16 * 1024 * 1024
"""Cap on a response body, and on the total bytes of a stream (decoded, so a gzip bomb too)."""
MAX_STREAM_EVENTS = 100_000
RAW_TEXT_LIMIT = 65_536
"""How much of a non-JSON body is kept in `raw_response["raw_text"]`."""
MAX_TOKEN_COUNT = 2**31 - 1
"""The largest token count a usage may report (a PostgreSQL integer column)."""

FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})

_IDENTITY_HEADERS = frozenset(
    {
        "server",
        "via",
        "x-request-id",
        "request-id",
        "x-served-by",
        "openai-model",
        "openai-processing-ms",
        "openai-version",
        "x-model-id",
        "x-provider",
        "cf-ray",
        "fly-request-id",
    }
)
_IDENTITY_PREFIXES = ("x-ratelimit-",)
_LINE_BREAK = re.compile(rb"\r\n?|\n")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class WireError(Exception):
    """A body or stream that cannot be turned into an answer, with the class to record."""

    def __init__(self, error_class: ErrorClass, message: str) -> None:
        super().__init__(message)
        self.error_class = error_class
        self.message = message


def identity_headers(headers: httpx.Headers) -> dict[str, str]:
    """Only the response headers that say which system served the answer (a whitelist, so
    cookies and anything auth-like can never be recorded)."""
    kept: dict[str, str] = {}
    for name, value in headers.multi_items():
        key = name.lower()
        if key in _IDENTITY_HEADERS or key.startswith(_IDENTITY_PREFIXES):
            kept[key] = f"{kept[key]}, {value}" if key in kept else value
    return kept


def one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(storable(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def storable(text: str) -> str:
    """The text with NUL characters and lone surrogates replaced by U+FFFD."""
    return _UNSTORABLE.sub("\ufffd", text)


def _storable(value: Any) -> Any:
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return {storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable(v) for v in value]
    return value


def raw_text(body: bytes) -> dict[str, Any]:
    return {"raw_text": body[:RAW_TEXT_LIMIT].decode("utf-8", errors="replace")}


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def decode_json(body: bytes | str) -> Any:
    """Strict JSON: NaN and Infinity are refused, since they cannot be stored as JSON; strings
    are made storable (NUL and lone surrogates only come from \\u escapes, or, in bytes, from
    a surrogate's UTF-8 form, which `json.loads` lets through)."""
    escaped = "\\u" in body if isinstance(body, str) else (b"\\u" in body or b"\xed" in body)
    try:
        value = json.loads(body, parse_constant=_reject_constant)
        return _storable(value) if escaped else value
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc


def raw_payload(body: bytes) -> dict[str, Any]:
    """What to keep of a body: the decoded JSON object, else the start of its text."""
    try:
        decoded = decode_json(body)
    except ValueError:
        return raw_text(body)
    return decoded if isinstance(decoded, dict) else raw_text(body)


def error_detail(payload: Any) -> str | None:
    """The human message of an error body: {"error": {"message"}}, {"error": "..."}, ..."""
    if not isinstance(payload, dict):
        return None
    error = payload.get("error")
    if isinstance(error, dict):
        for key in ("message", "msg", "detail", "type", "code"):
            if error.get(key) not in (None, ""):
                return str(error[key])
        return json.dumps(error)[:300]
    if error not in (None, "", False):
        return str(error)
    for key in ("message", "detail"):
        if payload.get(key) not in (None, ""):
            return str(payload[key])
    return None


def failure(
    error_class: ErrorClass,
    message: str,
    *,
    status_code: int | None = None,
    raw_response: dict[str, Any] | None = None,
) -> CompletionResponse:
    return CompletionResponse(
        ok=False,
        status_code=status_code,
        error_class=error_class,
        error_message=one_line(message),
        raw_response=raw_response,
    )


def status_error_class(status: int) -> ErrorClass:
    if status in (401, 403):
        return ErrorClass.AUTH
    if status == 404:
        return ErrorClass.NOT_FOUND
    if status == 429:
        return ErrorClass.RATE_LIMITED
    if 500 <= status <= 599:
        return ErrorClass.SERVER_ERROR
    if 400 <= status <= 499:
        return ErrorClass.CLIENT_ERROR
    return ErrorClass.PROTOCOL_ERROR


#: Statuses whose meaning wins over anything their body says (a 429 "request too large" for
#: a tokens-per-minute budget is a rate limit, not a context overflow).
_STATUS_FIRST = frozenset({401, 403, 404, 429})


def error_class_of(default: ErrorClass, message: str, payload: Any) -> tuple[ErrorClass, str]:
    """`default` and `message`, unless the error body refuses the prompt as too long for the
    context: then `context_length_exceeded`, and the counts it states before the message
    (`auditor.providers.context_length`)."""
    overflow = context_overflow(payload)
    if overflow is None:
        return default, message
    return ErrorClass.CONTEXT_LENGTH_EXCEEDED, f"{overflow.note()}; {message}"


def http_error(status: int, body: bytes) -> CompletionResponse:
    """A non-2xx answer, classified by its status (a context overflow whatever its status
    but 401, 403, 404 and 429), its body kept."""
    payload = raw_payload(body)
    detail = error_detail(payload) if "raw_text" not in payload else payload["raw_text"][:200]
    message = f"HTTP {status}: {detail}" if detail else f"HTTP {status}"
    error_class = status_error_class(status)
    if status not in _STATUS_FIRST:
        error_class, message = error_class_of(error_class, message, payload)
    answer = failure(error_class, message, status_code=status, raw_response=payload)
    return answer.model_copy(update={"upstream": error_upstream(payload)})


def error_upstream(payload: dict[str, Any]) -> str | None:
    """The upstream a router names in an error body (OpenRouter: `error.metadata.
    provider_name`, null when the router itself refused)."""
    error = payload.get("error")
    metadata = error.get("metadata") if isinstance(error, dict) else None
    name = metadata.get("provider_name") if isinstance(metadata, dict) else None
    return name.strip() if isinstance(name, str) and name.strip() else None


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"


def _for_validation(data: dict[str, Any], *, chunk: bool) -> dict[str, Any]:
    """A copy with the allowances of the module docstring applied (the original is kept)."""
    copy = {k: v for k, v in data.items() if k != "usage"}
    choices = data.get("choices")
    if isinstance(choices, list):
        patched = []
        for choice in choices:
            if isinstance(choice, dict):
                reason = choice.get("finish_reason")
                if (reason is None or isinstance(reason, str)) and reason not in FINISH_REASONS:
                    choice = {**choice, "finish_reason": None if chunk else "stop"}
            patched.append(choice)
        copy["choices"] = patched
    return copy


def _validate(model: type[BaseModel], data: dict[str, Any], *, chunk: bool) -> None:
    try:
        model.model_validate(_for_validation(data, chunk=chunk))
    except ValidationError as exc:
        what = "stream chunk" if chunk else "completion"
        raise WireError(ErrorClass.PROTOCOL_ERROR, f"off-spec {what}: {_describe(exc)}") from exc


def parse_usage(raw: Any) -> Usage:
    if raw is None:
        return Usage()
    if not isinstance(raw, dict):
        raise WireError(ErrorClass.PROTOCOL_ERROR, "usage is not an object")
    fields = ("prompt_tokens", "completion_tokens", "total_tokens")
    details = raw.get("completion_tokens_details")
    if details is not None and not isinstance(details, dict):
        raise WireError(
            ErrorClass.PROTOCOL_ERROR, "usage.completion_tokens_details is not an object"
        )
    try:
        usage = Usage.model_validate(
            {**{k: raw.get(k) for k in fields},
             "reasoning_tokens": (details or {}).get("reasoning_tokens")}
        )  # fmt: skip
    except ValidationError as exc:
        raise WireError(ErrorClass.PROTOCOL_ERROR, f"off-spec usage: {_describe(exc)}") from exc
    for name, count in usage.model_dump().items():
        if count is not None and not 0 <= count <= MAX_TOKEN_COUNT:
            raise WireError(ErrorClass.PROTOCOL_ERROR, f"off-spec usage: {name} out of range")
    return usage


#: Where servers put the reasoning of a message or a delta, in the order they are read: vLLM
#: 0.11+ and OpenRouter send `reasoning`; vLLM before 0.11, SGLang, llama.cpp's server and
#: DeepSeek's API send `reasoning_content` (tests/providers/wire_examples/reasoning/).
REASONING_FIELDS = ("reasoning", "reasoning_content")


def reasoning_of(message: dict[str, Any]) -> tuple[str | None, str | None]:
    """The reasoning text of a message or delta and the field it came in (None, None: none).
    A reasoning field that is neither a string nor null is off-spec."""
    found: tuple[str | None, str | None] = (None, None)
    for name in REASONING_FIELDS:
        value = message.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise WireError(
                ErrorClass.PROTOCOL_ERROR, f"off-spec reasoning: {name} is not a string"
            )
        if found[0] is None or (value and not found[0]):
            found = (value, name)
    return found


def upstream_of(payload: dict[str, Any]) -> str | None:
    """The upstream a router says served the answer: OpenRouter's top-level `provider`
    (tests/providers/wire_examples/reasoning/openrouter_*.json). Anything but a non-blank
    string says nothing."""
    value = payload.get("provider")
    return value.strip() if isinstance(value, str) and value.strip() else None


def parse_completion(body: bytes, status: int = 200) -> CompletionResponse:
    """A 2xx non-stream body -> an answer, an api_error, or a protocol_error."""
    try:
        payload = decode_json(body)
    except ValueError as exc:
        return failure(
            ErrorClass.PROTOCOL_ERROR,
            f"HTTP {status} body is not JSON: {exc}",
            status_code=status,
            raw_response=raw_text(body),
        )
    if not isinstance(payload, dict):
        return failure(
            ErrorClass.PROTOCOL_ERROR,
            f"HTTP {status} body is JSON but not an object",
            status_code=status,
            raw_response=raw_text(body),
        )
    if payload.get("error") not in (None, "", False):
        message = f"HTTP {status} carrying an error: {error_detail(payload)}"
        error_class, message = error_class_of(ErrorClass.API_ERROR, message, payload)
        return failure(error_class, message, status_code=status, raw_response=payload)
    try:
        _validate(ChatCompletion, payload, chunk=False)
        if not payload["choices"]:
            raise WireError(ErrorClass.PROTOCOL_ERROR, "off-spec completion: choices is empty")
        usage = parse_usage(payload.get("usage"))
        choice = payload["choices"][0]
        message = choice["message"]
        reasoning, reasoning_source = reasoning_of(message)
    except WireError as exc:
        return failure(exc.error_class, exc.message, status_code=status, raw_response=payload)
    logprobs = choice.get("logprobs") or {}
    return CompletionResponse(
        ok=True,
        status_code=status,
        text=message.get("content"),
        reasoning=reasoning,
        reasoning_source=reasoning_source,
        upstream=upstream_of(payload),
        finish_reason=choice.get("finish_reason"),
        tool_calls=message.get("tool_calls"),
        usage=usage,
        logprobs=logprobs.get("content"),
        served_model=payload["model"],
        raw_response=payload,
    )


class LineSplitter:
    """Bytes in arbitrary pieces -> complete lines (CRLF, LF or CR), without the breaks."""

    def __init__(self) -> None:
        self._pending = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._pending += data
        if b"\n" not in data and b"\r" not in data:
            return []
        *lines, rest = _LINE_BREAK.split(bytes(self._pending))
        self._pending = bytearray(rest)
        return lines

    def flush(self) -> list[bytes]:
        rest, self._pending = bytes(self._pending), bytearray()
        return [rest] if rest else []


class StreamAssembler:
    """SSE lines of a chat-completion stream -> one answer.

    Each `data:` line is one event (chat-completion events are single-line JSON); comments,
    blank lines and other fields (`event:`, `id:`, `retry:`) are ignored; `data: [DONE]` ends
    the stream. Only choice 0 is assembled. `feed_line` raises `WireError` on the first bad
    event; `chunks` keeps everything that arrived, the bad event included.
    """

    def __init__(self) -> None:
        self.chunks: list[dict[str, Any]] = []
        self.done = False
        self.has_output = False
        self._valid = 0
        self._text: list[str] = []
        self._saw_content = False
        self._reasoning: list[str] = []
        self._reasoning_source: str | None = None
        self._calls: dict[int, dict[str, Any]] = {}
        self._finish_reason: str | None = None
        self._usage = Usage()
        self._logprobs: list[dict[str, Any]] = []
        self._model: str | None = None
        self._upstream: str | None = None

    def feed_line(self, line: bytes) -> None:
        if self.done:
            return
        text = line.decode("utf-8", errors="replace")
        field, _, value = text.partition(":")
        if field != "data":
            return
        value = value.removeprefix(" ")
        if not value.strip():
            return
        if value.strip() == "[DONE]":
            self.done = True
            return
        if len(self.chunks) >= MAX_STREAM_EVENTS:
            raise WireError(ErrorClass.PROTOCOL_ERROR, f"stream exceeds {MAX_STREAM_EVENTS} events")
        try:
            payload = decode_json(value)
        except ValueError as exc:
            self.chunks.append(raw_text(value.encode()))
            raise WireError(ErrorClass.PROTOCOL_ERROR, f"stream event is not JSON: {exc}") from exc
        if not isinstance(payload, dict):
            self.chunks.append(raw_text(value.encode()))
            raise WireError(ErrorClass.PROTOCOL_ERROR, "stream event is JSON but not an object")
        self.chunks.append(payload)
        if payload.get("error") not in (None, "", False):
            message = f"stream carrying an error: {error_detail(payload)}"
            raise WireError(*error_class_of(ErrorClass.API_ERROR, message, payload))
        _validate(ChatCompletionChunk, payload, chunk=True)
        self._absorb(payload)

    def _absorb(self, chunk: dict[str, Any]) -> None:
        self._valid += 1
        self._model = self._model or chunk.get("model") or None
        self._upstream = self._upstream or upstream_of(chunk)
        if chunk.get("usage") is not None:
            self._usage = parse_usage(chunk["usage"])
        for choice in chunk["choices"]:
            if choice.get("index") != 0:
                continue
            delta = choice.get("delta") or {}
            reasoning, source = reasoning_of(delta)
            if reasoning is not None:
                self._reasoning.append(reasoning)
                self._reasoning_source = self._reasoning_source or source
                self.has_output = self.has_output or bool(reasoning)
            content = delta.get("content")
            if content is not None:
                self._text.append(content)
                self._saw_content = True
                self.has_output = self.has_output or bool(content)
            for call in delta.get("tool_calls") or []:
                self._merge_call(call)
                self.has_output = True
            if choice.get("finish_reason") is not None:
                self._finish_reason = choice["finish_reason"]
            logprobs = (choice.get("logprobs") or {}).get("content")
            if logprobs:
                self._logprobs.extend(logprobs)

    def _merge_call(self, call: dict[str, Any]) -> None:
        """Tool-call deltas by index: the id is an identifier, so the first one wins; the
        name and arguments are text fragments, concatenated (as openai-python does)."""
        slot = self._calls.setdefault(
            call["index"],
            {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
        )
        if call.get("id") and not slot["id"]:
            slot["id"] = call["id"]
        if call.get("type"):
            slot["type"] = call["type"]
        function = call.get("function") or {}
        slot["function"]["name"] += function.get("name") or ""
        slot["function"]["arguments"] += function.get("arguments") or ""

    def partial(self) -> dict[str, Any]:
        return {"chunks": self.chunks}

    def result(self, status: int = 200) -> CompletionResponse:
        """The answer once the stream has ended (by [DONE] or by the body ending)."""
        if not self._valid:
            return failure(
                ErrorClass.PROTOCOL_ERROR,
                f"HTTP {status} stream carried no completion chunks",
                status_code=status,
                raw_response=self.partial(),
            )
        if not self.done and self._finish_reason is None:
            return failure(
                ErrorClass.PROTOCOL_ERROR,
                f"HTTP {status} stream truncated: ended without [DONE] or a finish_reason",
                status_code=status,
                raw_response=self.partial(),
            )
        return CompletionResponse(
            ok=True,
            status_code=status,
            text="".join(self._text) if self._saw_content else None,
            reasoning="".join(self._reasoning) if self._reasoning_source else None,
            reasoning_source=self._reasoning_source,
            upstream=self._upstream,
            finish_reason=self._finish_reason,
            tool_calls=[self._calls[i] for i in sorted(self._calls)] or None,
            usage=self._usage,
            logprobs=self._logprobs or None,
            served_model=self._model,
            raw_response=self.partial(),
        )
