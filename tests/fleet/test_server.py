"""The fleet's HTTP layer, spoken to by the official openai client over real sockets."""

from __future__ import annotations

import json
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import uvicorn
from auditor_fleet import (
    DEFAULT_MODEL,
    Backend,
    BackendError,
    ChatRequest,
    EchoBackend,
    FleetMember,
    FleetSpec,
    FleetSpecError,
    Generation,
    backends,
    build_app,
    default_fleet,
    echo_fleet,
    load_fleet_spec,
)
from auditor_fleet.process import FleetHandle, free_port, running_fleet

MEMBERS: list[dict[str, Any]] = [
    {"name": "honest"},
    {"name": "flaky", "fault": "flaky", "strength": 0.3},
    {"name": "h401", "fault": "http_401"},
    {"name": "h404", "fault": "http_404"},
    {"name": "h429", "fault": "http_429", "strength": 7},
    {"name": "h500", "fault": "http_500"},
    {"name": "html", "fault": "html_error"},
    {"name": "garbage", "fault": "garbage"},
    {"name": "truncated", "fault": "truncated_json"},
    {"name": "errobj", "fault": "error_object"},
    {"name": "hang", "fault": "hang"},
    {"name": "reset", "fault": "reset"},
    {"name": "drip", "fault": "slow_drip", "strength": 40},
    {"name": "slow", "latency_ms": 300},
    {"name": "wrongmodel", "fault": "wrong_model"},
    {"name": "capped", "fault": "max_tokens_cap", "strength": 3},
    {"name": "hot", "fault": "sampling_override", "strength": 1.5},
    {"name": "nosys", "fault": "drop_system"},
    {"name": "persona", "fault": "inject_system"},
    {"name": "chatty", "fault": "persona"},
    {"name": "sometimes", "fault": "persona", "strength": 0.5},
    {"name": "short", "fault": "truncate_context", "strength": 5},
    {"name": "blocking", "backend": "test-blocking"},
    {"name": "live", "backend": "test-streaming"},
]
HELLO = [{"role": "user", "content": "Say hello to the auditor."}]


@backends.register("test-blocking")
class SlowBackend(Backend):
    """A stand-in for a CPU-bound model: blocks its thread, must never overlap itself."""

    blocking = True

    def __init__(self) -> None:
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()

    def generate(self, request: ChatRequest, on_text: Any = None) -> Generation:
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        time.sleep(0.2)
        with self.lock:
            self.active -= 1
        return Generation(text="done", prompt_tokens=1, completion_tokens=1)


LIVE_WORDS = ["one", " two", " three", " four", " five", " six"]


@backends.register("test-streaming")
class StreamingBackend(Backend):
    """A stand-in for a model that tells its answer as it goes: one word every 80 ms, the
    last one held back until the end (as a possible stop string would be)."""

    blocking = True

    def generate(self, request: ChatRequest, on_text: Any = None) -> Generation:
        if request.messages[-1].text() == "refuse":
            raise BackendError(400, "The prompt is too long.", "context_length_exceeded")
        tell = on_text or (lambda piece: None)
        tell("")
        for word in LIVE_WORDS[:-1]:
            time.sleep(0.08)
            tell(word)
        time.sleep(0.08)
        return Generation(text="".join(LIVE_WORDS), prompt_tokens=3, completion_tokens=6)


@pytest.fixture(scope="module")
def fleet() -> Iterator[FleetHandle]:
    spec = FleetSpec(members=[FleetMember(port=0, **m) for m in MEMBERS], seed=7)
    with running_fleet(spec) as handle:
        yield handle


def client(fleet: FleetHandle, name: str, **kwargs: Any) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=fleet.base_url(name), api_key="x", max_retries=0, timeout=10, **kwargs
    )


def chat(fleet: FleetHandle, name: str, **kwargs: Any) -> Any:
    kwargs.setdefault("messages", HELLO)
    return client(fleet, name).chat.completions.create(model=DEFAULT_MODEL, **kwargs)


def post(fleet: FleetHandle, name: str, body: Any, **kwargs: Any) -> httpx.Response:
    url = fleet.base_url(name) + "/chat/completions"
    return httpx.post(url, json=body, timeout=10, **kwargs)


# --- honest behaviour ----------------------------------------------------------------------


def test_completion_round_trip(fleet: FleetHandle) -> None:
    raw = client(fleet, "honest").chat.completions.with_raw_response.create(
        model="any-model-id", messages=HELLO, temperature=0
    )
    assert raw.headers["server"] == "auditor-fleet/honest"
    assert raw.headers["x-request-id"]
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.model == "any-model-id"
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.finish_reason == "stop"
    assert 8 <= len(choice.message.content.split()) <= 40
    usage = completion.usage
    assert usage.completion_tokens == len(choice.message.content.split())
    assert usage.prompt_tokens == len(HELLO[0]["content"].split()) + 4
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert choice.logprobs is None


def test_request_id_is_echoed(fleet: FleetHandle) -> None:
    response = post(
        fleet, "honest", {"model": "m", "messages": HELLO}, headers={"x-request-id": "abc"}
    )
    assert response.headers["x-request-id"] == "abc"


def test_stream_round_trip_matches_non_stream(fleet: FleetHandle) -> None:
    whole = chat(fleet, "honest", temperature=0)
    stream = chat(
        fleet, "honest", temperature=0, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    text = "".join(c.choices[0].delta.content for c in content_chunks)
    assert text == whole.choices[0].message.content
    assert len(content_chunks) == whole.usage.completion_tokens  # word by word
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finals] == ["stop"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage.model_dump() == whole.usage.model_dump()


def test_stream_is_sent_while_it_is_generated(fleet: FleetHandle) -> None:
    stream = chat(fleet, "live", stream=True, stream_options={"include_usage": True})
    timed = [(time.monotonic(), c) for c in stream]
    chunks = [c for _, c in timed]
    assert chunks[0].choices[0].delta.role == "assistant"
    content = [
        (t, c.choices[0].delta.content)
        for t, c in timed
        if c.choices and c.choices[0].delta.content
    ]
    assert [text for _, text in content] == LIVE_WORDS  # as told, then what was held back
    assert content[-2][0] - content[0][0] >= 0.2  # the first words came well before the last
    finals = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finals == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 6
    whole = chat(fleet, "live")
    assert whole.choices[0].message.content == "".join(LIVE_WORDS)


def test_live_stream_refusal_and_client_leaving(fleet: FleetHandle) -> None:
    refuse = [{"role": "user", "content": "refuse"}]
    with pytest.raises(openai.BadRequestError) as caught:
        chat(fleet, "live", messages=refuse, stream=True)  # refused before the stream began
    assert caught.value.code == "context_length_exceeded"

    url = fleet.base_url("live") + "/chat/completions"
    with httpx.stream("POST", url, json={"messages": HELLO, "stream": True}, timeout=5) as r:
        first = next(line for line in r.iter_lines() if line.startswith("data:"))
        assert '"role":"assistant"' in first
    # gone after the first chunk: the generation ends unread and the backend serves on
    again = chat(fleet, "live", stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in again) == "".join(LIVE_WORDS)
    assert chat(fleet, "honest").choices[0].message.content


def test_stream_without_usage_has_no_usage_chunk(fleet: FleetHandle) -> None:
    chunks = list(chat(fleet, "honest", stream=True))
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)


def test_temperature_zero_is_deterministic(fleet: FleetHandle) -> None:
    texts = {chat(fleet, "honest", temperature=0).choices[0].message.content for _ in range(3)}
    assert len(texts) == 1
    assert chat(fleet, "honest").choices[0].message.content in texts  # None means greedy


def test_temperature_one_varies_with_seed(fleet: FleetHandle) -> None:
    texts = [
        chat(fleet, "honest", temperature=1, seed=s).choices[0].message.content for s in range(6)
    ]
    assert len(set(texts)) >= 5
    again = chat(fleet, "honest", temperature=1, seed=3).choices[0].message.content
    assert again == texts[3]


def test_max_tokens_gives_length(fleet: FleetHandle) -> None:
    completion = chat(fleet, "honest", max_tokens=3)
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 3
    assert len(completion.choices[0].message.content.split()) == 3
    newer = chat(fleet, "honest", max_completion_tokens=2)
    assert newer.usage.completion_tokens == 2


def test_logprobs(fleet: FleetHandle) -> None:
    completion = chat(fleet, "honest", logprobs=True, top_logprobs=3)
    choice = completion.choices[0]
    entries = choice.logprobs.content
    assert len(entries) == completion.usage.completion_tokens
    assert "".join(e.token for e in entries) == choice.message.content
    for e in entries:
        assert e.logprob <= 0
        assert e.bytes == list(e.token.encode())
        assert len(e.top_logprobs) == 3
        assert e.token in [t.token for t in e.top_logprobs]
        assert [t.logprob for t in e.top_logprobs] == sorted(
            (t.logprob for t in e.top_logprobs), reverse=True
        )
    streamed = chat(fleet, "honest", logprobs=True, top_logprobs=1, stream=True)
    tokens = [
        c.choices[0].logprobs.content[0].token for c in streamed if c.choices[0].delta.content
    ]
    assert "".join(tokens) == choice.message.content


def test_models_and_healthz(fleet: FleetHandle) -> None:
    models = client(fleet, "h401").models.list()  # faults only touch chat completions
    assert [m.id for m in models.data] == [DEFAULT_MODEL]
    health = httpx.get(fleet.base_url("hang").removesuffix("/v1") + "/healthz").json()
    assert health == {"status": "ok", "name": "hang", "fault": "hang"}


@pytest.mark.parametrize(
    ("body", "param"),
    [(b"{not json", None), (b"[1, 2]", None), (b'{"model": "m"}', "messages")],
)
def test_bad_requests_get_openai_errors(fleet: FleetHandle, body: bytes, param: str | None) -> None:
    url = fleet.base_url("honest") + "/chat/completions"
    response = httpx.post(url, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"]
    assert error["param"] == param
    assert response.headers["server"] == "auditor-fleet/honest"


def test_unknown_route_is_an_openai_404(fleet: FleetHandle) -> None:
    response = httpx.get(fleet.base_url("honest") + "/nope")
    assert response.status_code == 404
    assert response.json()["error"]["message"]


def test_latency(fleet: FleetHandle) -> None:
    start = time.monotonic()
    chat(fleet, "slow")
    assert time.monotonic() - start >= 0.29


def test_blocking_backend_is_serialized_off_the_loop(fleet: FleetHandle) -> None:
    results: list[str] = []

    def call() -> None:
        results.append(chat(fleet, "blocking").choices[0].message.content)

    threads = [threading.Thread(target=call) for _ in range(2)]
    start = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(0.05)
    quick = time.monotonic()
    chat(fleet, "honest")  # the loop still serves while the backend works
    assert time.monotonic() - quick < 0.15
    for t in threads:
        t.join()
    assert results == ["done", "done"]
    assert time.monotonic() - start >= 0.39  # two 0.2 s generations, one after the other


# --- protocol faults -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "error", "status"),
    [
        ("h401", openai.AuthenticationError, 401),
        ("h404", openai.NotFoundError, 404),
        ("h429", openai.RateLimitError, 429),
        ("h500", openai.InternalServerError, 500),
    ],
)
def test_status_faults(fleet: FleetHandle, name: str, error: type, status: int) -> None:
    with pytest.raises(error) as caught:
        chat(fleet, name)
    assert caught.value.status_code == status
    assert caught.value.body["message"]
    assert caught.value.response.headers["server"] == f"auditor-fleet/{name}"
    if status == 429:
        assert caught.value.response.headers["retry-after"] == "7"


def test_flaky_rate_and_retry_after(fleet: FleetHandle) -> None:
    statuses = []
    with httpx.Client(timeout=5) as http:
        for _ in range(200):
            r = http.post(fleet.base_url("flaky") + "/chat/completions", json={"messages": HELLO})
            statuses.append(r.status_code)
            if r.status_code == 503:
                assert r.headers["retry-after"] == "1"
                assert r.json()["error"]["type"] == "server_error"
    assert set(statuses) == {200, 503}
    assert abs(statuses.count(503) / 200 - 0.3) < 0.08


def test_html_error(fleet: FleetHandle) -> None:
    response = post(fleet, "html", {"messages": HELLO})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert b"<html>" in response.content
    with pytest.raises(openai.APIResponseValidationError):
        client(fleet, "html", _strict_response_validation=True).chat.completions.create(
            model=DEFAULT_MODEL, messages=HELLO
        )


def test_garbage_is_not_json(fleet: FleetHandle) -> None:
    bodies = set()
    for _ in range(5):
        response = post(fleet, "garbage", {"messages": HELLO})
        assert response.status_code == 200
        with pytest.raises(ValueError):
            json.loads(response.content)
        bodies.add(response.content)
    assert len(bodies) == 5


def test_truncated_json(fleet: FleetHandle) -> None:
    response = post(fleet, "truncated", {"messages": HELLO})
    assert response.status_code == 200
    assert response.content.startswith(b'{"id":"chatcmpl-')
    with pytest.raises(ValueError):
        json.loads(response.content)
    streamed = post(fleet, "truncated", {"messages": HELLO, "stream": True})
    assert streamed.content.startswith(b"data: {")
    assert b"[DONE]" not in streamed.content


def test_error_object(fleet: FleetHandle) -> None:
    response = post(fleet, "errobj", {"messages": HELLO})
    assert response.status_code == 200
    assert response.json()["error"]["type"] == "server_error"
    with pytest.raises(openai.APIError, match="invalid content"):
        list(chat(fleet, "errobj", stream=True))


def test_hang_times_out_while_others_answer(fleet: FleetHandle) -> None:
    outcome: list[BaseException] = []

    def hang() -> None:
        try:
            client(fleet, "hang").with_options(timeout=1.0).chat.completions.create(
                model=DEFAULT_MODEL, messages=HELLO
            )
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=hang)
    start = time.monotonic()
    thread.start()
    time.sleep(0.1)
    quick = time.monotonic()
    assert chat(fleet, "honest").choices[0].message.content
    assert time.monotonic() - quick < 0.3
    thread.join(5)
    assert isinstance(outcome[0], openai.APITimeoutError)
    assert time.monotonic() - start >= 0.95


def test_reset_is_a_connection_error(fleet: FleetHandle) -> None:
    with pytest.raises(openai.APIConnectionError):
        chat(fleet, "reset")
    port = fleet.member("reset").port
    body = json.dumps({"messages": HELLO}).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        with pytest.raises(ConnectionResetError):
            sock.recv(1024)
    assert chat(fleet, "honest")  # the server itself is unharmed


def test_reset_fallback_without_transport_extension() -> None:
    """Under a plain uvicorn (no transport in the scope) the body is cut short instead."""
    member = FleetMember(name="reset", port=free_port(), fault="reset")
    config = uvicorn.Config(
        build_app(member, EchoBackend()), port=member.port, log_level="critical", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.01)
        url = f"http://127.0.0.1:{member.port}/v1/chat/completions"
        # The cut body reaches the client as an early close or, under load, as a reset.
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            httpx.post(url, json={"messages": HELLO}, timeout=5)
    finally:
        server.should_exit = True
        thread.join(5)


def test_slow_drip(fleet: FleetHandle) -> None:
    received = b""
    url = fleet.base_url("drip") + "/chat/completions"
    start = time.monotonic()
    with httpx.stream("POST", url, json={"messages": HELLO}, timeout=5) as response:
        assert response.status_code == 200
        for piece in response.iter_raw():
            received += piece
            if time.monotonic() - start > 1.0:
                break
    assert 0 < len(received) < 100  # 40 bytes/s, far short of the ~400-byte completion
    assert received.startswith(b'{"id":')


# --- text completions (/v1/completions) -----------------------------------------------------


def complete(fleet: FleetHandle, name: str, **kwargs: Any) -> Any:
    kwargs.setdefault("prompt", "Say hello to the auditor.")
    return client(fleet, name).completions.create(model=DEFAULT_MODEL, **kwargs)


def test_text_completions_need_a_model_backend(fleet: FleetHandle) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        complete(fleet, "honest")
    assert "chat completions only" in caught.value.body["message"]
    assert caught.value.response.headers["server"] == "auditor-fleet/honest"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "hi", "max_tokens": 0}, "max_tokens"),
        ({"prompt": "hi", "max_tokens": 0, "echo": False}, "max_tokens"),
        ({"prompt": ["a", "b"]}, "prompt"),
        ({"prompt": "hi", "logprobs": 21}, "logprobs"),
        ({"prompt": "hi", "stream": True}, "stream"),
        ({"model": "m"}, "prompt"),
    ],
)
def test_bad_text_completions_get_openai_errors(
    fleet: FleetHandle, body: dict[str, Any], param: str
) -> None:
    response = httpx.post(fleet.base_url("honest") + "/completions", json=body, timeout=5)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


def test_gateway_faults_apply_to_text_completions(fleet: FleetHandle) -> None:
    with pytest.raises(openai.AuthenticationError):
        complete(fleet, "h401")
    with pytest.raises(openai.RateLimitError):
        complete(fleet, "h429")
    with pytest.raises(openai.APIConnectionError):
        complete(fleet, "reset")
    url = fleet.base_url("flaky") + "/completions"
    with httpx.Client(timeout=5) as http:
        statuses = {http.post(url, json={"prompt": "hi"}).status_code for _ in range(30)}
    assert statuses == {404, 503}  # the echo backend's 404, and the flaky gateway's 503


# --- request faults ------------------------------------------------------------------------


def test_wrong_model(fleet: FleetHandle) -> None:
    assert chat(fleet, "wrongmodel").model != DEFAULT_MODEL


def test_max_tokens_cap(fleet: FleetHandle) -> None:
    completion = chat(fleet, "capped", max_tokens=100)
    assert completion.usage.completion_tokens == 3
    assert completion.choices[0].finish_reason == "length"


def test_sampling_override(fleet: FleetHandle) -> None:
    texts = {chat(fleet, "hot", temperature=0).choices[0].message.content for _ in range(4)}
    assert len(texts) > 1


def test_system_prompt_faults(fleet: FleetHandle) -> None:
    with_system = [{"role": "system", "content": "Be terse."}, *HELLO]

    def text(name: str, messages: list) -> str:
        return chat(fleet, name, messages=messages, temperature=0).choices[0].message.content

    assert text("nosys", with_system) == text("honest", HELLO) != text("honest", with_system)
    assert text("persona", HELLO) != text("honest", HELLO)


def test_hidden_persona_keeps_the_callers_system_prompt(fleet: FleetHandle) -> None:
    with_system = [{"role": "system", "content": "Be terse."}, *HELLO]
    honest = chat(fleet, "honest", messages=with_system, temperature=0)
    chatty = chat(fleet, "chatty", messages=with_system, temperature=0)
    assert chatty.choices[0].message.content != honest.choices[0].message.content
    # the persona is added, not swapped in: the prompt grows by the persona's words alone
    assert chatty.usage.prompt_tokens > honest.usage.prompt_tokens + 20
    texts = [chat(fleet, "sometimes", temperature=0).choices[0].message.content for _ in range(12)]
    plain = chat(fleet, "honest", temperature=0).choices[0].message.content
    assert 0 < texts.count(plain) < 12


def test_truncate_context(fleet: FleetHandle) -> None:
    long = [{"role": "user", "content": "one two three four five six seven eight"}]
    completion = chat(fleet, "short", messages=long)
    assert completion.usage.prompt_tokens == 5 + 4
    tail = [{"role": "user", "content": "four five six seven eight"}]
    assert (
        completion.choices[0].message.content
        == chat(fleet, "honest", messages=tail).choices[0].message.content
    )


# --- the echo backend and the spec, without HTTP --------------------------------------------


def echo(**kwargs: Any) -> Generation:
    kwargs.setdefault("messages", HELLO)
    return EchoBackend().generate(ChatRequest.model_validate(kwargs))


def test_echo_arithmetic_and_stop() -> None:
    question = [{"role": "user", "content": "What is 17 + 25? Answer with one number."}]
    assert echo(messages=question).text == "42"
    words = echo().text.split()
    cut = echo(stop=[words[2]])
    assert cut.finish_reason == "stop"
    assert not cut.text.endswith(words[2])
    assert len(cut.text.split()) <= 2


def test_echo_greedy_lengths_and_temperature_spread() -> None:
    lengths = [
        len(echo(messages=[{"role": "user", "content": f"q{i}"}]).text.split()) for i in range(200)
    ]
    assert min(lengths) >= 8 and max(lengths) <= 40
    assert statistics.pstdev(lengths) > 5
    greedy = echo().text.split()
    mild = [echo(temperature=0.2, seed=s).text.split() for s in range(50)]
    hot = [echo(temperature=1.8, seed=s).text.split() for s in range(50)]

    def agreement(samples: list[list[str]]) -> float:
        return statistics.mean(
            sum(a == b for a, b in zip(s, greedy, strict=False)) / len(greedy) for s in samples
        )

    assert agreement(mild) > agreement(hot) + 0.3


def test_spec_validation_and_loading(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="loopback"):
        FleetSpec(host="10.0.0.1", members=[FleetMember(name="a", port=1)])
    with pytest.raises(ValueError, match="used twice"):
        FleetSpec(members=[FleetMember(name="a", port=1), FleetMember(name="a", port=2)])
    with pytest.raises(ValueError, match="<= 1"):
        FleetMember(name="a", port=1, fault="flaky", strength=2)
    assert FleetSpec(host="::1", members=[FleetMember(name="a", port=1)]).host == "::1"
    assert [m.port for m in echo_fleet(9000).members] == [9000, 9001, 9002]
    assert {m.backend for m in echo_fleet().members} == {"echo"}
    demo = default_fleet(9000)
    assert [m.port for m in demo.members] == list(range(9000, 9000 + len(demo.members)))
    assert {m.backend for m in demo.members} == {"llama"}

    path = tmp_path / "fleet.yaml"
    path.write_text(
        "members:\n  - name: acme\n    port: 9100\n  - name: bad\n    port: 9101\n"
        "    fault: explode\n"
    )
    with pytest.raises(FleetSpecError, match=r"fleet.yaml:6: members\[1\].fault"):
        load_fleet_spec(path)
    path.write_text(json.dumps(default_fleet().model_dump()))
    assert load_fleet_spec(path) == default_fleet()
