"""A fleet member's answers as OpenAI sends them: a chat.completion or its stream of chunks,
a text completion, and the byte streams the body faults send instead (a trickling body)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
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
    """A generation rendered as an OpenAI chat.completion, or as its stream of chunks.

    `gen` may be set late: a live stream (`live_events`) starts before the generation ends.
    `billed_prompt_tokens`, when set, is the usage's prompt_tokens instead of the
    generation's (a `usage_as_sent` member's bill), in the body and the stream's usage chunk.
    """

    def __init__(
        self, chat: ChatRequest, generation: Generation | None, model: str, fingerprint: str
    ):
        self.chat = chat
        self._gen = generation
        self.model = model
        self.fingerprint = fingerprint
        self.id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        self.include_usage = bool((chat.stream_options or {}).get("include_usage"))
        self.billed_prompt_tokens: int | None = None

    @property
    def gen(self) -> Generation:
        assert self._gen is not None, "the generation is not done yet"
        return self._gen

    @gen.setter
    def gen(self, generation: Generation) -> None:
        self._gen = generation

    @property
    def stream(self) -> bool:
        return self.chat.stream

    def usage(self) -> dict[str, int]:
        g = self.gen
        prompt = g.prompt_tokens if self.billed_prompt_tokens is None else self.billed_prompt_tokens
        return {
            "prompt_tokens": prompt,
            "completion_tokens": g.completion_tokens,
            "total_tokens": prompt + g.completion_tokens,
        }

    def _logprob_entries(self) -> list[dict[str, Any]] | None:
        if not self.chat.logprobs or self.gen.logprobs is None:
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
            for t in self.gen.logprobs
        ]

    def json_bytes(self) -> bytes:
        entries = self._logprob_entries()
        body = {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.fingerprint,
            "choices": [
                {
                    "index": 0,
                    "message": self._message(),
                    "logprobs": None if entries is None else {"content": entries, "refusal": None},
                    "finish_reason": self.gen.finish_reason,
                }
            ],
            "usage": self.usage(),
        }
        return json.dumps(body, separators=(",", ":")).encode()

    def _message(self) -> dict[str, Any]:
        calls = self.gen.tool_calls
        content = None if calls and not self.gen.text else self.gen.text
        message = {"role": "assistant", "content": content, "refusal": None}
        return {**message, "tool_calls": calls} if calls else message

    def _chunk(
        self, delta: dict[str, Any], logprobs: Any = None, finish: str | None = None
    ) -> bytes:
        body: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.fingerprint,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
            ],
        }
        if self.include_usage:
            body["usage"] = None
        return sse(body)

    def _end(self) -> Iterator[bytes]:
        """The finish chunk, the usage chunk when asked, and [DONE]."""
        yield self._chunk({}, finish=self.gen.finish_reason)
        if self.include_usage:
            yield sse(
                {
                    "id": self.id,
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.model,
                    "system_fingerprint": self.fingerprint,
                    "choices": [],
                    "usage": self.usage(),
                }
            )
        yield sse("[DONE]")

    def sse_events(self) -> Iterator[bytes]:
        calls = self.gen.tool_calls or []
        entries = None if calls else self._logprob_entries()
        pieces = [e["token"] for e in entries] if entries else split_tokens(self.gen.text)
        opening = None if calls and not self.gen.text else ""
        yield self._chunk({"role": "assistant", "content": opening})
        for i, piece in enumerate(pieces):
            logprobs = {"content": [entries[i]], "refusal": None} if entries else None
            yield self._chunk({"content": piece}, logprobs)
        for i, call in enumerate(calls):
            yield self._chunk({"tool_calls": [{"index": i, **call}]})
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
        for chunk in self._end():
            yield chunk

    def sse_bytes(self) -> bytes:
        return b"".join(self.sse_events())


class TextAnswer:
    """A text completion rendered as an OpenAI text_completion (never streamed)."""

    stream = False

    def __init__(self, completion: TextCompletion, model: str, fingerprint: str) -> None:
        self.completion = completion
        self.model = model
        self.fingerprint = fingerprint
        self.id = f"cmpl-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())

    def json_bytes(self) -> bytes:
        c = self.completion
        body = {
            "id": self.id,
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
