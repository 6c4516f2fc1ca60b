"""Reasoning members, routers, seeds and choices through a member's HTTP layer, on a scripted
backend or the echo backend (no model): the wire shapes, set beside the recorded real ones
(tests/providers/wire_examples/reasoning/), and the new faults. The same on the real model:
test_reasoning_llama.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from auditor_fleet import (
    Backend,
    ChatRequest,
    FleetMember,
    FleetSpec,
    Generation,
    backends,
    default_fleet,
    pick_members,
)
from auditor_fleet.process import FleetHandle, running_fleet
from auditor_fleet.reasoning import leaked
from auditor_fleet.spec import FAULT_STRENGTH, FRACTION_FAULTS, REASONING_FAULTS
from pydantic import ValidationError

from auditor.providers.reasoning_emulation import ANSWER, DEFAULT_BUDGETS, THINK
from auditor.providers.wire import StreamAssembler, parse_completion

EXAMPLES = Path(__file__).resolve().parents[1] / "providers" / "wire_examples" / "reasoning"
THOUGHT = "Seven and five make twelve, so the sum is 12."
ANSWERED = "12."
SEEN: list[ChatRequest] = []


@backends.register("test-reasoning")
class ScriptedBackend(Backend):
    """Thinks `THOUGHT` when asked to think, answers `ANSWERED` when asked for the answer, one
    token a word, cut at max_tokens (finish_reason length) as a model is."""

    def generate(self, request: ChatRequest, on_text: Any = None) -> Generation:
        SEEN.append(request)
        last = request.messages[-1].text()
        words = (THOUGHT if last.endswith(THINK) else ANSWERED if last == ANSWER else "Hi.").split()
        cut = request.max_tokens is not None and len(words) > request.max_tokens
        kept = words[: request.max_tokens] if cut else words
        return Generation(
            text=" ".join(kept),
            finish_reason="length" if cut else "stop",
            prompt_tokens=50,
            completion_tokens=len(kept),
        )

    def count_prompt(self, request: ChatRequest) -> int:
        return 7 * len(request.messages)


MEMBERS: list[dict[str, Any]] = [
    {"name": "thinker", "reasoning": "reasoning"},
    {"name": "thinker-rc", "reasoning": "reasoning_content"},
    {"name": "leaky", "reasoning": "reasoning", "fault": "reasoning_leak"},
    {"name": "leaky-half", "reasoning": "reasoning", "fault": "reasoning_leak", "strength": 0.5},
    {"name": "flat", "reasoning": "reasoning", "fault": "effort_ignored"},
    {"name": "loose", "reasoning": "reasoning", "fault": "drop_response_format"},
    {"name": "plain"},
]
ECHO_MEMBERS: list[dict[str, Any]] = [
    {"name": "echo"},
    {"name": "unseeded", "fault": "ignore_seed"},
    {"name": "router", "router": True},
    {"name": "fallback", "fault": "router_fallback"},
]
HELLO = [{"role": "user", "content": "What is 7 + 5?"}]


@pytest.fixture(scope="module")
def fleet() -> Iterator[FleetHandle]:
    members = [FleetMember(port=0, backend="test-reasoning", **m) for m in MEMBERS]
    members += [FleetMember(port=0, **m) for m in ECHO_MEMBERS]
    with running_fleet(FleetSpec(members=members, seed=2)) as handle:
        yield handle


def post(fleet: FleetHandle, name: str, **body: Any) -> httpx.Response:
    body.setdefault("messages", HELLO)
    url = fleet.base_url(name) + "/chat/completions"
    response = httpx.post(url, json=body, timeout=10)
    assert response.status_code == 200, response.text
    return response


def chunks(fleet: FleetHandle, name: str, **body: Any) -> list[dict[str, Any]]:
    text = post(fleet, name, stream=True, **body).text
    events = [line.removeprefix("data: ") for line in text.splitlines() if line]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def example(name: str) -> dict[str, Any]:
    return dict(json.loads((EXAMPLES / name).read_text()))


def assembled(stream: list[dict[str, Any]]) -> Any:
    assembler = StreamAssembler()
    for chunk in stream:
        assembler.feed_line(b"data: " + json.dumps(chunk).encode())
    assembler.feed_line(b"data: [DONE]")
    return assembler.result()


# --- the spec ---------------------------------------------------------------------------


def test_a_reasoning_fault_needs_a_reasoning_member() -> None:
    for fault in REASONING_FAULTS:
        with pytest.raises(ValidationError, match="needs a reasoning member"):
            FleetMember(name="x", port=0, fault=fault)
        assert FleetMember(name="x", port=0, fault=fault, reasoning="reasoning_content")
    with pytest.raises(ValidationError):
        FleetMember(name="x", port=0, reasoning="thoughts")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="fraction"):
        FleetMember(name="x", port=0, fault="reasoning_leak", reasoning="reasoning", strength=2)


def test_the_new_fields_and_faults_and_their_defaults() -> None:
    member = FleetMember(name="x", port=0)
    assert member.reasoning is None and member.router is False and not member.is_router()
    assert FleetMember(name="x", port=0, router=True).is_router()
    assert FleetMember(name="x", port=0, fault="router_fallback").is_router()
    assert {"reasoning_leak", "stream_tools_differ", "router_fallback"} <= FRACTION_FAULTS
    assert FAULT_STRENGTH["reasoning_leak"][1] == 1.0
    assert FAULT_STRENGTH["stream_tools_differ"][1] == 1.0
    assert FAULT_STRENGTH["router_fallback"][1] == 0.5
    added = pick_members(default_fleet(), ["reasoning_leak", "ignore_seed"]).members
    assert [(m.name, m.fault, m.reasoning) for m in added] == [
        ("reasoning-leak", "reasoning_leak", "reasoning"),
        ("ignore-seed", "ignore_seed", None),
    ]


# --- reasoning on the wire --------------------------------------------------------------


def test_a_reasoning_member_answers_as_vllm_with_a_reasoning_parser(fleet: FleetHandle) -> None:
    body = post(fleet, "thinker", max_tokens=100).json()
    message = body["choices"][0]["message"]
    assert message["reasoning"] == THOUGHT and message["content"] == ANSWERED
    assert "reasoning_content" not in message
    real = example("vllm_0.18_reasoning_only.json")["body"]["choices"][0]["message"]
    assert set(message) <= set(real) and isinstance(real["reasoning"], str)
    # prompt: the caller's messages as counted; completion: both passes; no reasoning_tokens
    assert body["usage"] == {"prompt_tokens": 7, "completion_tokens": 11, "total_tokens": 18}
    parsed = parse_completion(post(fleet, "thinker").content)
    assert (parsed.reasoning, parsed.reasoning_source, parsed.text) == (
        THOUGHT,
        "reasoning",
        ANSWERED,
    )
    assert parsed.usage.reasoning_tokens is None


def test_a_reasoning_content_member_answers_as_llama_cpp_server(fleet: FleetHandle) -> None:
    message = post(fleet, "thinker-rc").json()["choices"][0]["message"]
    assert message["reasoning_content"] == THOUGHT and message["content"] == ANSWERED
    assert "reasoning" not in message
    real = example("llama_cpp_server_reasoning_content.json")["body"]["choices"][0]["message"]
    assert set(real) <= set(message)
    parsed = parse_completion(post(fleet, "thinker-rc").content)
    assert (parsed.reasoning, parsed.reasoning_source) == (THOUGHT, "reasoning_content")


@pytest.mark.parametrize(
    ("name", "field", "recorded"),
    [
        ("thinker", "reasoning", "vllm_0.11.2_reasoning_stream.json"),
        ("thinker-rc", "reasoning_content", "llama_cpp_server_reasoning_content_stream.json"),
    ],
)
def test_a_stream_sends_the_reasoning_first_then_the_answer(
    fleet: FleetHandle, name: str, field: str, recorded: str
) -> None:
    stream = chunks(fleet, name, stream_options={"include_usage": True})
    deltas = [c["choices"][0]["delta"] for c in stream if c["choices"]]
    kinds = [next((k for k in (field, "content") if d.get(k)), None) for d in deltas]
    said = [k for k in kinds if k]
    assert said == sorted(said, key=lambda k: k != field) and said[0] == field
    assert "".join(d.get(field) or "" for d in deltas) == THOUGHT
    assert "".join(d.get("content") or "" for d in deltas) == ANSWERED
    # the reasoning deltas carry the reasoning field alone, as the real server's do
    real = [c["choices"][0]["delta"] for c in example(recorded)["chunks"] if c["choices"]]
    real_keys = {k for d in real if d.get(field) for k in d if d[k] is not None}
    ours = {k for d in deltas if d.get(field) for k in d}
    assert ours == {field} and field in real_keys
    assert stream[-1]["choices"] == [] and stream[-1]["usage"]["completion_tokens"] == 11
    result = assembled(stream)
    assert (result.reasoning, result.reasoning_source, result.text) == (THOUGHT, field, ANSWERED)


def test_a_reasoning_that_uses_every_token_leaves_no_answer(fleet: FleetHandle) -> None:
    body = post(fleet, "thinker", max_tokens=5).json()
    choice = body["choices"][0]
    assert choice["message"]["content"] is None and choice["finish_reason"] == "length"
    assert choice["message"]["reasoning"] == " ".join(THOUGHT.split()[:5])
    assert body["usage"]["completion_tokens"] == 5
    real = example("vllm_0.26_gpt_oss_length_reasoning_only.json")["body"]["choices"][0]
    assert real["message"]["content"] is None and real["finish_reason"] == "length"
    stream = chunks(fleet, "thinker", max_tokens=5)
    assert not any(c["choices"][0]["delta"].get("content") for c in stream)
    assert stream[-1]["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize(
    ("body", "level"),
    [
        ({}, "medium"),
        ({"reasoning_effort": "low"}, "low"),
        ({"reasoning_effort": "high"}, "high"),
        ({"reasoning": {"effort": "low"}}, "low"),
        ({"reasoning_effort": "extreme"}, "medium"),  # a level the model lacks: its default
    ],
)
def test_the_effort_level_sets_the_thinking_budget(
    fleet: FleetHandle, body: dict[str, Any], level: str
) -> None:
    post(fleet, "thinker", max_tokens=200, **body)
    thinking, answering = SEEN[-2:]
    assert thinking.max_tokens == DEFAULT_BUDGETS[level]
    assert answering.max_tokens == 200 - len(THOUGHT.split())
    post(fleet, "flat", max_tokens=200, **body)
    assert SEEN[-2].max_tokens == DEFAULT_BUDGETS["medium"]  # effort_ignored


def test_response_format_constrains_the_answer_only(fleet: FleetHandle) -> None:
    fmt = {"type": "json_object"}
    post(fleet, "thinker", response_format=fmt)
    thinking, answering = SEEN[-2:]
    assert thinking.response_format is None and answering.response_format == fmt
    post(fleet, "loose", response_format=fmt)  # drop_response_format
    assert SEEN[-1].response_format is None and SEEN[-2].response_format is None


def test_reasoning_leak_leaves_the_reasoning_in_the_content(fleet: FleetHandle) -> None:
    message = post(fleet, "leaky").json()["choices"][0]["message"]
    assert message["content"] == f"<think>{THOUGHT}</think>\n\n{ANSWERED}"
    assert "reasoning" not in message and "reasoning_content" not in message
    real = example("llama_cpp_server_reasoning_format_none.json")["body"]["choices"][0]
    assert real["message"]["content"].startswith("<think>")
    assert "</think>\n\n" in real["message"]["content"]
    stream = chunks(fleet, "leaky")
    deltas = [c["choices"][0]["delta"] for c in stream]
    assert not any("reasoning" in d for d in deltas)
    assert "".join(d.get("content") or "" for d in deltas) == message["content"]
    cut = post(fleet, "leaky", max_tokens=5).json()["choices"][0]
    assert cut["message"]["content"] == "<think>" + " ".join(THOUGHT.split()[:5])
    assert leaked("a", None) == "<think>a" and leaked("a", "b") == "<think>a</think>\n\nb"


def test_reasoning_leak_strength_is_the_share_of_requests(fleet: FleetHandle) -> None:
    leaks = [
        "reasoning" not in post(fleet, "leaky-half").json()["choices"][0]["message"]
        for _ in range(40)
    ]
    assert 8 <= sum(leaks) <= 32


def test_a_plain_member_sends_no_reasoning(fleet: FleetHandle) -> None:
    message = post(fleet, "plain").json()["choices"][0]["message"]
    assert message["content"] == "Hi." and "reasoning" not in message
    assert len(SEEN[-1].messages) == 1  # one pass


def test_bad_response_formats_are_400s(fleet: FleetHandle) -> None:
    url = fleet.base_url("plain") + "/chat/completions"
    for fmt in ({"type": "xml"}, {"type": "json_schema", "json_schema": {"schema": 3}}):
        response = httpx.post(url, json={"messages": HELLO, "response_format": fmt}, timeout=5)
        assert response.status_code == 400 and "response_format" in response.text


# --- routers ----------------------------------------------------------------------------


def test_a_router_names_the_pinned_upstream_in_every_body_and_chunk(fleet: FleetHandle) -> None:
    pin = {"only": ["Groq"], "allow_fallbacks": False}
    body = post(fleet, "router", provider=pin).json()
    assert body["provider"] == "Groq" and body["id"].startswith("gen-")
    assert list(body)[:2] == ["id", "provider"]  # where OpenRouter puts it
    real = example("openrouter_2025_reasoning_details.json")["body"]
    assert list(real)[:2] == ["id", "provider"]
    assert post(fleet, "router", provider={"order": ["DeepInfra", "Groq"]}).json()["provider"] == (
        "DeepInfra"
    )
    assert post(fleet, "router").json()["provider"] == "Primary"
    stream = chunks(fleet, "router", provider=pin, stream_options={"include_usage": True})
    assert {c["provider"] for c in stream} == {"Groq"}
    for c in example("openrouter_2026_reasoning_stream.json")["chunks"]:
        assert "provider" in c
    assert "provider" not in post(fleet, "echo").json()


def test_router_fallback_answers_a_share_from_another_upstream(fleet: FleetHandle) -> None:
    pin = {"only": ["Groq"], "allow_fallbacks": False}
    named = [post(fleet, "fallback", provider=pin).json()["provider"] for _ in range(40)]
    assert set(named) == {"Groq", "Fallback-Host"}
    assert 8 <= named.count("Fallback-Host") <= 32
    stream = chunks(fleet, "fallback", provider=pin)
    assert len({c["provider"] for c in stream}) == 1  # one upstream a request


# --- seeds and choices ------------------------------------------------------------------


def sampled(fleet: FleetHandle, name: str, **body: Any) -> list[str]:
    choices = post(fleet, name, temperature=1.0, **body).json()["choices"]
    return [c["message"]["content"] for c in choices]


def test_a_seed_repeats_an_answer_unless_the_member_ignores_it(fleet: FleetHandle) -> None:
    assert sampled(fleet, "echo", seed=11) == sampled(fleet, "echo", seed=11)
    assert sampled(fleet, "echo", seed=11) != sampled(fleet, "echo", seed=12)
    ignored = {sampled(fleet, "unseeded", seed=11)[0] for _ in range(4)}
    assert len(ignored) > 1


def test_n_choices_are_sampled_each_on_its_own(fleet: FleetHandle) -> None:
    body = post(fleet, "echo", n=3, temperature=1.0, seed=5).json()
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    texts = [c["message"]["content"] for c in body["choices"]]
    assert len(set(texts)) == 3
    assert sampled(fleet, "echo", n=3, seed=5) == texts  # a seed repeats every choice
    assert sampled(fleet, "echo", seed=5) == texts[:1]  # the first is the one-choice answer
    words = sum(len(t.split()) for t in texts)
    assert body["usage"]["completion_tokens"] == words
    stream = chunks(fleet, "echo", n=2, temperature=1.0, seed=5)
    by_index: dict[int, str] = {}
    for c in stream:
        for choice in c["choices"]:
            by_index[choice["index"]] = by_index.get(choice["index"], "") + (
                choice["delta"].get("content") or ""
            )
    assert by_index == {0: texts[0], 1: texts[1]}
    finishes = [ch["index"] for c in stream for ch in c["choices"] if ch["finish_reason"]]
    assert finishes == [0, 1]
    url = fleet.base_url("echo") + "/chat/completions"
    assert httpx.post(url, json={"messages": HELLO, "n": 17}, timeout=5).status_code == 400
