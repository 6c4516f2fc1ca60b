"""Hostile provider answers, generated: the adapter records every one as an answer or an error
class, within its deadline, and whatever it returns can be scored and stored on both
databases, so a round always goes on.

test_openai_compatible.py has the hand-written cases (one per fault, huge bodies and byte
caps among them); here hypothesis mixes them: arbitrary status codes, content types and
bytes; valid completions mutated at any field (deleted, or replaced by any JSON value: huge
or negative numbers, NUL characters, lone surrogates, deep nesting); truncated bodies; SSE
streams of good, broken and error events cut at arbitrary byte boundaries; and endless or
dripping bodies against a real deadline. The last test runs `auditor run` twice against a
real HTTP provider that answers garbage to some probes: errors are recorded per class and
never count as a behaviour difference.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from helpers.cli import provider, run_auditor, write_config
from helpers.db import store_with_round
from helpers.openai import WEATHER_TOOL, chunk, completion, sse
from helpers.servers import LoopbackProvider, QuietHandler
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletion

from auditor.config import ProviderConfig, RetryPolicy
from auditor.providers.openai_compatible import OpenAICompatibleAdapter
from auditor.records import (
    CompletionRequest,
    CompletionResponse,
    ErrorClass,
    Message,
    ProbeCase,
    RequestParams,
)
from auditor.scorers import score_all

SECRET = "sk-fuzz-5f2a9c0e1d7b"

# --- what a hostile provider can put in a JSON field ---------------------------------------

NASTY_TEXT = [
    "",
    "Paris",
    "\x00",
    "a\x00b",
    "\ud800",
    "x\udfffy",
    "\u202eevil",
    "\U0001f642" * 3,
    "<|im_end|>assistant:",
    "line\r\nbreak",
    "x" * 5000,
    '{"a": [1, 2',
    "[" * 3000,
    '{"city": "Paris"}',
    f"your key is {SECRET}",
    "1" * 400,
    "1e999",
]
texts = st.one_of(st.text(max_size=30), st.sampled_from(NASTY_TEXT))
numbers = st.one_of(
    st.integers(),
    st.sampled_from([-1, 0, 2**31, 2**63, 10**30, -(10**30)]),
    st.floats(allow_nan=False, allow_infinity=False),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)

PATHS: list[tuple[str | int, ...]] = [
    ("id",),
    ("object",),
    ("created",),
    ("model",),
    ("choices",),
    ("choices", 0),
    ("choices", 0, "index"),
    ("choices", 0, "message"),
    ("choices", 0, "message", "role"),
    ("choices", 0, "message", "content"),
    ("choices", 0, "message", "tool_calls"),
    ("choices", 0, "finish_reason"),
    ("choices", 0, "logprobs"),
    ("usage",),
    ("usage", "prompt_tokens"),
    ("usage", "completion_tokens"),
    ("usage", "total_tokens"),
    ("error",),
]
CHUNK_PATHS: list[tuple[str | int, ...]] = [
    ("model",),
    ("choices",),
    ("choices", 0),
    ("choices", 0, "index"),
    ("choices", 0, "delta"),
    ("choices", 0, "delta", "content"),
    ("choices", 0, "delta", "tool_calls"),
    ("choices", 0, "finish_reason"),
    ("usage",),
    ("error",),
]
mutations = st.lists(
    st.tuples(st.sampled_from(PATHS), st.one_of(st.just("delete"), json_values)), max_size=3
)
chunk_mutations = st.lists(
    st.tuples(st.sampled_from(CHUNK_PATHS), st.one_of(st.just("delete"), json_values)),
    min_size=1,
    max_size=2,
)


def mutate(body: Any, path: tuple[str | int, ...], value: Any) -> None:
    """Delete the field at `path`, or set it to `value` (when its parent exists)."""
    parent = body
    for key in path[:-1]:
        try:
            parent = parent[key]
        except (KeyError, IndexError, TypeError):
            return
    last = path[-1]
    if isinstance(parent, dict):
        if value == "delete":
            parent.pop(last, None)
        else:
            parent[last] = value
    elif isinstance(parent, list) and isinstance(last, int) and last < len(parent):
        if value == "delete":
            del parent[last]
        else:
            parent[last] = value


@st.composite
def plausible_completions(draw: st.DrawFn) -> dict[str, Any]:
    """A completion that may well be valid, carrying hostile text in its free-text fields:
    content, tool-call arguments, the served model, the finish reason."""
    body = completion(draw(st.one_of(st.none(), texts)))
    choice = body["choices"][0]
    if draw(st.booleans()):
        name = draw(st.sampled_from(["get_weather", "nope", "\x00", "\ud800"]))
        arguments = draw(texts)
        choice["message"]["tool_calls"] = [
            {"id": "call_1", "type": "function", "function": {"name": name, "arguments": arguments}}
        ]
    if draw(st.booleans()):
        body["model"] = draw(texts)
    if draw(st.booleans()):
        choice["finish_reason"] = draw(st.one_of(st.none(), texts))
    if draw(st.booleans()):
        body["usage"] = {
            key: draw(st.one_of(st.none(), numbers))
            for key in ("prompt_tokens", "completion_tokens", "total_tokens")
        }
    return body


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """The bytes of a non-stream answer."""
    kind = draw(st.sampled_from(["mutated", "plausible", "bytes", "truncated", "error"]))
    if kind == "bytes":
        return draw(st.binary(max_size=512))
    if kind == "error":
        return json.dumps({"error": draw(json_values)}).encode()
    body = draw(plausible_completions()) if kind == "plausible" else completion()
    if kind == "mutated":
        for path, value in draw(mutations):
            mutate(body, path, value)
    raw = json.dumps(body).encode()
    if kind == "truncated":
        return raw[: draw(st.integers(0, max(len(raw) - 1, 0)))]
    return raw


@st.composite
def streams(draw: st.DrawFn) -> list[bytes]:
    """The pieces of an SSE answer: events good and bad, split at arbitrary bytes."""
    events: list[bytes] = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["chunk", "chunk", "mutated", "raw", "error", "comment"]))
        if kind == "chunk":
            event = chunk(draw(st.one_of(st.none(), texts)))
            events.append(sse(event, done=False))
        elif kind == "mutated":
            event = chunk("x")
            for path, value in draw(chunk_mutations):
                mutate(event, path, value)
            events.append(sse(event, done=False))
        elif kind == "raw":
            events.append(b"data: " + draw(st.binary(max_size=64)) + b"\n\n")
        elif kind == "error":
            events.append(b"data: " + json.dumps({"error": draw(json_values)}).encode() + b"\n\n")
        else:
            events.append(b": keep-alive\n\n")
    ending = draw(st.sampled_from(["done", "finish", "none"]))
    if ending == "finish":
        events.append(sse(chunk(finish="stop"), done=False))
    elif ending == "done":
        events.append(b"data: [DONE]\n\n")
    data = b"".join(events)
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=4)))
    return [data[a:b] for a, b in itertools.pairwise([0, *cuts, len(data)])]


# --- an in-process provider and what must hold of every answer ----------------------------

CLASS_OF_STATUS = {401: ErrorClass.AUTH, 403: ErrorClass.AUTH, 404: ErrorClass.NOT_FOUND}


def expected_class(status: int) -> ErrorClass:
    if status in CLASS_OF_STATUS:
        return CLASS_OF_STATUS[status]
    if status == 429:
        return ErrorClass.RATE_LIMITED
    if 500 <= status <= 599:
        return ErrorClass.SERVER_ERROR
    if 400 <= status <= 499:
        return ErrorClass.CLIENT_ERROR
    return ErrorClass.PROTOCOL_ERROR


def config(**overrides: Any) -> ProviderConfig:
    fields: dict[str, Any] = {
        "name": "fuzz",
        "base_url": "http://provider.test/v1",
        "model": "m",
        "api_key_env": "FUZZ_KEY",
        "timeout_s": 5.0,
        "retry": RetryPolicy(max_attempts=2, backoff_base_s=0.01, backoff_max_s=0.01),
    }
    return ProviderConfig(**{**fields, **overrides})


def request(stream: bool = False) -> CompletionRequest:
    return CompletionRequest(
        probe_id="weather",
        probe_hash="h",
        sample_index=0,
        messages=[Message(role="user", content="Weather in Paris? Answer in JSON.")],
        params=RequestParams(max_tokens=16),
        stream=stream,
    )


async def no_sleep(seconds: float) -> None:
    return None


async def exchange(handler: Any, *, stream: bool = False, **overrides: Any) -> CompletionResponse:
    adapter = OpenAICompatibleAdapter(
        config(**overrides),
        transport=httpx.MockTransport(handler),
        sleep=no_sleep,
        rng=random.Random(0),
    )
    try:
        return await adapter.complete(request(stream))
    finally:
        await adapter.aclose()


def strings_of(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from strings_of(k)
            yield from strings_of(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from strings_of(v)


def assert_recordable(response: CompletionResponse) -> None:
    """What the writer needs of an answer, on SQLite and PostgreSQL alike: text that encodes
    as UTF-8 (no lone surrogates), no NUL in plain text columns, integers a column holds."""
    assert response.ok == (response.error_class is None)
    if not response.ok:
        assert response.error_message and "\n" not in response.error_message
    for text in strings_of(response.model_dump(mode="python")):
        text.encode("utf-8")  # raises on a lone surrogate
    for text in (
        response.text,
        response.error_message,
        response.finish_reason,
        response.served_model,
    ):
        assert "\x00" not in (text or "")
    for tokens in response.usage.model_dump().values():
        assert tokens is None or 0 <= tokens < 2**31
    assert SECRET not in response.model_dump_json()


def assert_valid_completion(body: bytes, response: CompletionResponse) -> None:
    """ok=True only for a body that is a completion by the `openai` package's types."""
    payload = json.loads(body)
    assert isinstance(payload, dict) and not payload.get("error")
    choices = payload["choices"]
    assert isinstance(choices, list) and choices
    for choice in choices:  # any finish_reason string (or none) is recorded as is (wire.py)
        reason = choice.get("finish_reason") if isinstance(choice, dict) else 0
        if reason is None or isinstance(reason, str):
            choice["finish_reason"] = "stop"
    ChatCompletion.model_validate({k: v for k, v in payload.items() if k != "usage"})
    assert response.status_code is not None and 200 <= response.status_code <= 299


CASES = [
    ProbeCase(
        id="weather",
        suite="fuzz",
        messages=[Message(role="user", content="Weather in Paris? Answer in JSON.")],
        params=RequestParams(
            max_tokens=16,
            tools=[WEATHER_TOOL],
        ),
        expect={"json_schema": {"type": "object", "required": ["city"]}},
    ),
    ProbeCase(
        id="add",
        suite="fuzz",
        messages=[Message(role="user", content="17 + 25? Answer with one number only.")],
        params=RequestParams(max_tokens=16),
        expect={"number": 42},
    ),
    ProbeCase(
        id="shout",
        suite="fuzz",
        messages=[
            Message(role="system", content="Answer in uppercase, in one word."),
            Message(role="user", content="Capital of France?"),
        ],
        params=RequestParams(max_tokens=4),
        expect={"regex": "PARIS"},
    ),
]


class Sink:
    """Score and store answers as the round's writer does, in a real database."""

    def __init__(self, url: str) -> None:
        self.store = store_with_round(url, CASES, round_id="fuzz", suite="fuzz")
        self.provider_id = self.store.upsert_provider("m", "fuzz")
        self.index = itertools.count()

    def put(self, response: CompletionResponse, case_number: int) -> None:
        case = CASES[case_number]
        scores = score_all(case, response)
        req = CompletionRequest.from_case(case, next(self.index))
        assert self.store.add_sample("fuzz", self.provider_id, req, response, scores, None)


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("FUZZ_KEY", SECRET)
    return SECRET


STATUSES = [200, 200, 200, 200, 201, 302, 400, 401, 403, 404, 418, 429, 500, 503]
CONTENT_TYPES = ["application/json", "application/json", "text/html", "", "text/event-stream"]
SUPPRESS = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


def check_body(
    sink: Sink, status: int, content_type: str, body: bytes, stream: bool, case_number: int
) -> None:
    headers = {"content-type": content_type} if content_type else {}

    async def answer(req: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers=headers, content=body)

    response = asyncio.run(exchange(answer, stream=stream))
    assert_recordable(response)
    if response.ok:
        if not (stream and content_type != "application/json"):
            assert_valid_completion(body, response)
    elif not 200 <= status <= 299:
        assert response.error_class == expected_class(status)
    else:
        assert response.error_class in (ErrorClass.PROTOCOL_ERROR, ErrorClass.API_ERROR)
    sink.put(response, case_number)


@pytest.fixture
def sink(tmp_path: Path) -> Sink:
    """One database for all the examples of a test (hypothesis runs them in one call)."""
    return Sink(f"sqlite:///{tmp_path / 'fuzz.db'}")


@pytest.fixture
def pg_sink(pg_url: str) -> Sink:
    return Sink(pg_url)


@settings(max_examples=200, deadline=None, suppress_health_check=SUPPRESS)
@given(
    status=st.sampled_from(STATUSES),
    content_type=st.sampled_from(CONTENT_TYPES),
    body=bodies(),
    stream=st.booleans(),
    case_number=st.integers(0, len(CASES) - 1),
)
def test_any_answer_is_recorded_as_an_answer_or_an_error_class(
    key: str,
    sink: Sink,
    status: int,
    content_type: str,
    body: bytes,
    stream: bool,
    case_number: int,
) -> None:
    check_body(sink, status, content_type, body, stream, case_number)


@pytest.mark.postgres
@settings(max_examples=60, deadline=None, suppress_health_check=SUPPRESS)
@given(
    body=st.one_of(plausible_completions().map(lambda b: json.dumps(b).encode()), bodies()),
    case_number=st.integers(0, len(CASES) - 1),
)
def test_hostile_answers_are_stored_on_postgres(
    key: str, pg_sink: Sink, body: bytes, case_number: int
) -> None:
    check_body(pg_sink, 200, "application/json", body, False, case_number)


@settings(max_examples=150, deadline=None, suppress_health_check=SUPPRESS)
@given(pieces=streams(), case_number=st.integers(0, len(CASES) - 1))
def test_any_stream_is_recorded_as_an_answer_or_an_error_class(
    key: str, sink: Sink, pieces: list[bytes], case_number: int
) -> None:
    async def answer(req: httpx.Request) -> httpx.Response:
        async def body() -> AsyncIterator[bytes]:
            for piece in pieces:
                yield piece

        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())

    response = asyncio.run(exchange(answer, stream=True))
    assert_recordable(response)
    if response.ok:
        data = b"".join(pieces)
        assert b"[DONE]" in data or b'"finish_reason": "stop"' in data
        assert response.raw_response is not None and response.raw_response["chunks"]
    else:
        assert response.error_class in (ErrorClass.PROTOCOL_ERROR, ErrorClass.API_ERROR)
    sink.put(response, case_number)


# --- answers that never end, or end too slowly: the deadline cuts them --------------------

TIMEOUT_S = 0.5


async def endless_chunks() -> AsyncIterator[bytes]:
    while True:  # a valid stream that never finishes
        yield sse(chunk("tick"), done=False)
        await asyncio.sleep(0.001)


async def keep_alives() -> AsyncIterator[bytes]:
    while True:
        yield b": keep-alive\n\n"
        await asyncio.sleep(0.01)


async def drip_json() -> AsyncIterator[bytes]:
    for byte in json.dumps(completion()).encode():  # a valid body, one byte every 20 ms
        yield bytes([byte])
        await asyncio.sleep(0.02)


async def endless_blank_lines() -> AsyncIterator[bytes]:
    while True:
        yield b"\n" * 64
        await asyncio.sleep(0)


async def hang_then_answer() -> AsyncIterator[bytes]:
    await asyncio.sleep(30)
    yield json.dumps(completion()).encode()


SLOW = {
    "endless-chunks": (endless_chunks, True, "text/event-stream"),
    "keep-alives": (keep_alives, True, "text/event-stream"),
    "blank-lines": (endless_blank_lines, True, "text/event-stream"),
    "drip-stream-request": (drip_json, True, "application/json"),
    "drip-json": (drip_json, False, "application/json"),
    "hang-after-headers": (hang_then_answer, False, "application/json"),
}


@pytest.mark.parametrize("name", list(SLOW))
async def test_endless_and_dripping_answers_end_at_the_deadline(key: str, name: str) -> None:
    source, stream, content_type = SLOW[name]

    async def answer(req: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": content_type}, content=source())

    started = time.monotonic()
    response = await exchange(answer, stream=stream, timeout_s=TIMEOUT_S)
    elapsed = time.monotonic() - started
    assert response.error_class == ErrorClass.TIMEOUT, response.error_message
    assert TIMEOUT_S * 0.8 <= elapsed < TIMEOUT_S + 1.5
    assert response.attempts == 1  # a timeout is not retried
    assert_recordable(response)


async def test_a_hang_before_the_headers_ends_at_the_deadline(key: str) -> None:
    async def answer(req: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(200, json=completion())

    started = time.monotonic()
    response = await exchange(answer, timeout_s=TIMEOUT_S)
    assert response.error_class == ErrorClass.TIMEOUT
    assert time.monotonic() - started < TIMEOUT_S + 1.5


@pytest.mark.parametrize("value", ["sk-caf\u00e9", "sk-abc\n", "sk-\u2615", "sk-a\tb"])
async def test_a_key_no_header_can_carry_is_an_auth_error_and_nothing_is_sent(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """A key variable read from a file with its newline, or pasted with a stray character:
    the HTTP client would refuse to be built (a traceback) or send a broken header."""
    monkeypatch.setenv("FUZZ_KEY", value)
    sent: list[httpx.Request] = []

    async def answer(req: httpx.Request) -> httpx.Response:
        sent.append(req)
        return httpx.Response(200, json=completion())

    response = await exchange(answer)
    assert response.error_class == ErrorClass.AUTH and not sent
    assert "FUZZ_KEY does not hold a printable ASCII key" in (response.error_message or "")
    assert value.strip() not in response.model_dump_json()


# --- a real round against a provider that answers garbage to some probes ------------------

HOSTILE_SUITE = {
    "suite": "hostile",
    "defaults": {"params": {"temperature": 0, "max_tokens": 16}},
    "cases": [{"id": f"q{i}", "prompt": f"Question {i}?"} for i in range(14)],
}


def _completion_bytes(content: str, **extra: Any) -> bytes:
    return json.dumps(completion(content, **extra)).encode()


# What the provider answers to question i in the second round (the first is all good). The
# last two are good answers carrying text no database column takes as is.
_GOOD = "application/json"
PROTOCOL = ErrorClass.PROTOCOL_ERROR
HOSTILE: dict[str, tuple[int, str, bytes, ErrorClass | None]] = {
    "Question 0?": (200, "application/octet-stream", b"\x00\xff\xfe junk", PROTOCOL),
    "Question 1?": (200, _GOOD, _completion_bytes("Answer 1.")[:-25], PROTOCOL),
    "Question 2?": (200, _GOOD, b'{"error": {"message": "\\u0000 \\ud800"}}', ErrorClass.API_ERROR),
    "Question 3?": (200, _GOOD, b'{"id": "x", "object": "chat.completion"}', PROTOCOL),
    "Question 4?": (200, _GOOD, _completion_bytes("4", usage={"prompt_tokens": 10**30}), PROTOCOL),
    "Question 5?": (500, "text/html", b"<html>\x00 500 \xff</html>", ErrorClass.SERVER_ERROR),
    "Question 12?": (200, _GOOD, _completion_bytes("Answer\x00 12.\ud800"), None),
    "Question 13?": (200, _GOOD, _completion_bytes("Answer 13.", model="m\x00\udc00"), None),
}


class HostileProvider(LoopbackProvider):
    """A real OpenAI-compatible server: "Answer i." to question i, or, once `hostile` is set,
    the answers of HOSTILE; "slow" questions drip their answer past the client's deadline."""

    def __init__(self) -> None:
        self.hostile = False
        outer = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = json.loads(self.body())
                prompt = body["messages"][-1]["content"]
                status, content_type, data = 200, "application/json", b""
                if outer.hostile and prompt in HOSTILE:
                    status, content_type, data, _ = HOSTILE[prompt]
                elif outer.hostile and prompt == "Question 6?":  # slow drip: a timeout
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.end_headers()
                    try:
                        for byte in _completion_bytes("Answer 6."):
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(0.05)
                    except OSError:
                        pass
                    self.close_connection = True
                    return
                else:
                    number = prompt.removeprefix("Question ").removesuffix("?")
                    good = HOSTILE.get(prompt, (0, "", b"", ErrorClass.AUTH))
                    data = good[2] if good[3] is None else _completion_bytes(f"Answer {number}.")
                self.reply(status, data, content_type)

        self.serve(Handler)


@pytest.mark.slow
def test_a_round_goes_on_through_garbage_and_errors_are_not_differences(tmp_path: Path) -> None:
    probes = tmp_path / "probes"
    probes.mkdir()
    (probes / "hostile.yaml").write_text(yaml.safe_dump(HOSTILE_SUITE))
    db = tmp_path / "auditor.db"
    with HostileProvider() as server:
        entry = provider("acme", server.base_url, timeout_s=1.0)
        config = write_config(
            tmp_path, [entry], f"sqlite:///{db}", suites=["hostile"], probes_dir="probes"
        )
        first = run_auditor("run", "-c", str(config), "--no-progress", cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        server.hostile = True
        second = run_auditor("run", "-c", str(config), "--no-progress", cwd=tmp_path)
        assert second.returncode == 0, second.stderr
    assert "Traceback" not in first.stderr + second.stderr

    report = json.loads(
        run_auditor("report", "-c", str(config), "--format", "json", cwd=tmp_path).stdout
    )
    assert report["round"]["status"] == "complete" and report["round"]["complete"]
    (finding,) = report["findings"]
    assert finding["baseline"] == "history"  # the first round, all answered well
    expected_errors: dict[str, int] = {"timeout": 1}
    for _, _, _, error_class in HOSTILE.values():
        if error_class is not None:
            expected_errors[error_class.value] = expected_errors.get(error_class.value, 0) + 1
    assert finding["errors_by_class"] == expected_errors
    assert finding["requests"] == 14 and finding["errors"] == 7
    # Seven of fourteen answered: not unavailable, and the errors are no behaviour change.
    assert finding["verdict"] != "unavailable"
    assert finding["verdict"] != "deviant", finding
    assert not finding["diagnoses"]
    assert all((t.get("p_value") is None or t["p_value"] >= 0.05) for t in finding["tests"])

    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT probe_id, ok, error_class, output_text, served_model FROM samples s "
            "JOIN rounds r ON r.id = s.round_id WHERE r.id = ? ORDER BY probe_id",
            (report["round"]["id"],),
        ).fetchall()
    assert len(rows) == 14
    answers = {probe: text for probe, ok, _, text, _ in rows if ok}
    assert answers["q7"] == "Answer 7." and answers["q11"] == "Answer 11."
    assert answers["q12"] == "Answer\ufffd 12.\ufffd"  # stored, with what could not be kept marked
    assert {probe for probe, ok, *_ in rows if not ok} == {f"q{i}" for i in range(7)}
