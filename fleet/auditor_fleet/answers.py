"""A fleet member's answers as OpenAI sends them: a chat.completion or its stream of chunks,
a text completion, and the byte streams the body faults send instead (a trickling body)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Protocol

from auditor_fleet.backends import ChatRequest, Generation, TextCompletion, split_tokens

logger = logging.getLogger(__name__)


class Rendered(Protocol):
    """An answer as the member would send it, before its body faults."""

    @property
    def stream(self) -> bool: ...

    def json_bytes(self) -> bytes: ...

    def sse_bytes(self) -> bytes: ...

    def sse_events(self) -> Iterator[bytes]: ...


class ChatAnswer:
    """Generations rendered as an OpenAI chat.completion, or as its stream of chunks.

    `gen` (choice 0) may be set late: a live stream (`live_events`) starts before the
    generation ends; `gens` are all the choices of a request with `n` > 1, each with its
    `index`. `billed_prompt_tokens`, when set, is the usage's prompt_tokens instead of the
    generation's (a `usage_as_sent` member's bill), in the body and the stream's usage chunk.

    A reasoning member's reasoning (`Generation.reasoning`) goes in `reasoning_field` beside
    the content (null when the answer is empty, as vLLM's reasoning parser leaves it); in a
    stream, `{reasoning_field: piece}` deltas come before the content's. A router's
    `upstream` is a top-level `provider` in the body and in every chunk, as OpenRouter
    sends it, with OpenRouter's `gen-` ids. Tool calls stream as OpenAI streams them: a
    first delta with the call's id, type, name and empty arguments, then the arguments in
    pieces; `streamed_arguments` is what the pieces spell out (a `stream_tools_differ`
    member's differ from the arguments answered whole).
    """

    def __init__(
        self,
        chat: ChatRequest,
        generation: Generation | None,
        model: str,
        fingerprint: str,
        *,
        reasoning_field: str | None = None,
        upstream: str | None = None,
    ):
        self.chat = chat
        self.gens: list[Generation] = [] if generation is None else [generation]
        self.model = model
        self.fingerprint = fingerprint
        self.reasoning_field = reasoning_field
        self.upstream = upstream
        if upstream is None:
            self.id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        else:
            self.id = f"gen-{int(time.time())}-{uuid.uuid4().hex[:20]}"
        self.created = int(time.time())
        self.include_usage = bool((chat.stream_options or {}).get("include_usage"))
        self.billed_prompt_tokens: int | None = None
        self.streamed_arguments: Callable[[str], str] = str

    @property
    def gen(self) -> Generation:
        assert self.gens, "the generation is not done yet"
        return self.gens[0]

    @gen.setter
    def gen(self, generation: Generation) -> None:
        self.gens = [generation]

    @property
    def stream(self) -> bool:
        return self.chat.stream

    def usage(self) -> dict[str, int]:
        g = self.gen
        prompt = g.prompt_tokens if self.billed_prompt_tokens is None else self.billed_prompt_tokens
        completion = sum(gen.completion_tokens for gen in self.gens)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def _head(self, kind: str) -> dict[str, Any]:
        """The top-level fields every body and chunk starts with."""
        head: dict[str, Any] = {"id": self.id}
        if self.upstream is not None:
            head["provider"] = self.upstream
        return {
            **head,
            "object": kind,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.fingerprint,
        }

    def _logprob_entries(self, gen: Generation) -> list[dict[str, Any]] | None:
        if not self.chat.logprobs or gen.logprobs is None:
            return None
        return [
            {
                "token": t.token,
                "logprob": t.logprob,
                "bytes": list(t.token.encode()),
                "top_logprobs": [
                    {"token": a.token, "logprob": a.logprob, "bytes": list(a.token.encode())}
                    for a in t.top_logprobs
                ],
            }
            for t in gen.logprobs
        ]

    def json_bytes(self) -> bytes:
        choices = []
        for index, gen in enumerate(self.gens):
            entries = self._logprob_entries(gen)
            choices.append(
                {
                    "index": index,
                    "message": self._message(gen),
                    "logprobs": None if entries is None else {"content": entries, "refusal": None},
                    "finish_reason": gen.finish_reason,
                }
            )
        body = {**self._head("chat.completion"), "choices": choices, "usage": self.usage()}
        return json.dumps(body, separators=(",", ":")).encode()

    def _message(self, gen: Generation) -> dict[str, Any]:
        calls = gen.tool_calls
        empty = not gen.text and (bool(calls) or gen.reasoning is not None)
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None if empty else gen.text,
            "refusal": None,
        }
        if calls:
            message["tool_calls"] = calls
        if self.reasoning_field is not None and gen.reasoning is not None:
            message[self.reasoning_field] = gen.reasoning
        return message

    def _chunk(
        self,
        delta: dict[str, Any],
        logprobs: Any = None,
        finish: str | None = None,
        index: int = 0,
    ) -> bytes:
        body: dict[str, Any] = {
            **self._head("chat.completion.chunk"),
            "choices": [
                {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
            ],
        }
        if self.include_usage:
            body["usage"] = None
        return sse(body)

    def _end(self) -> Iterator[bytes]:
        """The usage chunk when asked, and [DONE]."""
        if self.include_usage:
            yield sse({**self._head("chat.completion.chunk"), "choices": [], "usage": self.usage()})
        yield sse("[DONE]")

    def _choice_events(self, index: int, gen: Generation) -> Iterator[bytes]:
        """One choice's chunks: its role, reasoning, content and tool calls, its finish."""
        calls = gen.tool_calls or []
        entries = None if calls else self._logprob_entries(gen)
        pieces = [e["token"] for e in entries] if entries else split_tokens(gen.text)
        opening = None if calls and not gen.text else ""
        yield self._chunk({"role": "assistant", "content": opening}, index=index)
        if self.reasoning_field is not None and gen.reasoning:
            for piece in split_tokens(gen.reasoning):
                yield self._chunk({self.reasoning_field: piece}, index=index)
        for i, piece in enumerate(pieces):
            logprobs = {"content": [entries[i]], "refusal": None} if entries else None
            yield self._chunk({"content": piece}, logprobs, index=index)
        for i, call in enumerate(calls):
            for delta in self._call_deltas(i, call):
                yield self._chunk({"tool_calls": [delta]}, index=index)
        yield self._chunk({}, finish=gen.finish_reason, index=index)

    def _call_deltas(self, i: int, call: dict[str, Any]) -> Iterator[dict[str, Any]]:
        function = call.get("function") or {}
        yield {
            "index": i,
            "id": call.get("id"),
            "type": call.get("type", "function"),
            "function": {"name": function.get("name", ""), "arguments": ""},
        }
        for piece in split_tokens(self.streamed_arguments(function.get("arguments") or "")):
            yield {"index": i, "function": {"arguments": piece}}

    def sse_events(self) -> Iterator[bytes]:
        for index, gen in enumerate(self.gens):
            yield from self._choice_events(index, gen)
        yield from self._end()

    async def live_events(
        self,
        first: str,
        events: asyncio.Queue[str | None],
        generation: asyncio.Future[Generation],
    ) -> AsyncIterator[bytes]:
        """The stream while the answer is generated: each piece the backend tells as it
        comes (`None` ends them), then what it held back, then the usual end."""
        yield self._chunk({"role": "assistant", "content": ""})
        sent = 0
        piece: str | None = first
        while piece is not None:
            if piece:
                sent += len(piece)
                yield self._chunk({"content": piece})
            piece = await events.get()
        try:
            self.gen = generation.result()
        except Exception:
            # The stream has begun: it can only stop short, as a failing upstream's would.
            logger.exception("generation failed mid-stream")
            return
        for rest in split_tokens(self.gen.text[sent:]):
            yield self._chunk({"content": rest})
        yield self._chunk({}, finish=self.gen.finish_reason)
        for chunk in self._end():
            yield chunk

    def sse_bytes(self) -> bytes:
        return b"".join(self.sse_events())


class TextAnswer:
    """A text completion rendered as an OpenAI text_completion (never streamed)."""

    stream = False

    def __init__(
        self,
        completion: TextCompletion,
        model: str,
        fingerprint: str,
        upstream: str | None = None,
    ) -> None:
        self.completion = completion
        self.model = model
        self.fingerprint = fingerprint
        self.upstream = upstream  # a router's, as in `ChatAnswer`
        self.id = f"cmpl-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())

    def json_bytes(self) -> bytes:
        c = self.completion
        head: dict[str, Any] = {"id": self.id}
        if self.upstream is not None:
            head["provider"] = self.upstream
        body = {
            **head,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.fingerprint,
            "choices": [
                {
                    "index": 0,
                    "text": c.text,
                    "logprobs": None if c.logprobs is None else c.logprobs.model_dump(),
                    "finish_reason": c.finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": c.prompt_tokens,
                "completion_tokens": c.completion_tokens,
                "total_tokens": c.prompt_tokens + c.completion_tokens,
            },
        }
        return json.dumps(body, separators=(",", ":")).encode()

    def sse_events(self) -> Iterator[bytes]:
        raise NotImplementedError("text completions are not streamed")

    def sse_bytes(self) -> bytes:
        raise NotImplementedError("text completions are not streamed")


def sse(data: dict[str, Any] | str) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return b"data: " + text.encode() + b"\n\n"


async def aiter_bytes(items: Iterator[bytes]) -> AsyncIterator[bytes]:
    for item in items:
        yield item


async def drip(
    body: bytes, bytes_per_second: float, closing: asyncio.Event
) -> AsyncIterator[bytes]:
    """The body in small pieces, about `bytes_per_second` of them each second."""
    step = max(1, round(bytes_per_second / 4))
    pause = step / bytes_per_second
    for start in range(0, len(body), step):
        yield body[start : start + step]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(closing.wait(), pause)
        if closing.is_set():
            return
