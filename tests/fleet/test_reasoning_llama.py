"""Reasoning members, structured output, seeds, choices, stops, logprobs, penalties, routers
and streamed tool calls on real members serving the packaged GGUF (the wire shapes on a
scripted backend: test_reasoning_members.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from auditor_fleet import FleetMember, FleetSpec
from auditor_fleet.process import FleetHandle, running_fleet

from auditor.config import LlamaCppReference
from auditor.providers.llama_cpp import LlamaCppEngine
from auditor.records import CompletionRequest, Message, RequestParams

pytestmark = [pytest.mark.model, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
MEMBERS: list[dict[str, Any]] = [
    {"name": "thinker", "reasoning": "reasoning", "noise": 0.0},
    {"name": "thinker-rc", "reasoning": "reasoning_content", "noise": 0.0},
    {"name": "leaky", "reasoning": "reasoning", "noise": 0.0, "fault": "reasoning_leak"},
    {"name": "flat", "reasoning": "reasoning", "noise": 0.0, "fault": "effort_ignored"},
    {"name": "plain", "noise": 0.0},
    {"name": "loose", "noise": 0.0, "fault": "drop_response_format"},
    {"name": "noisy"},  # the default noise: a seed must repeat it too
    {"name": "unseeded", "fault": "ignore_seed"},
    {"name": "router", "router": True, "noise": 0.0},
    {"name": "fallback", "fault": "router_fallback", "noise": 0.0},
    {"name": "streamy", "fault": "stream_tools_differ", "noise": 0.0},
]
CITY = {
    "type": "json_schema",
    "json_schema": {
        "name": "city",
        "schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture(scope="module")
def fleet() -> Iterator[FleetHandle]:
    members = [FleetMember(port=0, backend="llama", **m) for m in MEMBERS]
    with running_fleet(FleetSpec(members=members, seed=4), timeout_s=120) as handle:
        yield handle


def post(fleet: FleetHandle, name: str, route: str = "chat/completions", **body: Any) -> Any:
    if route == "chat/completions":
        body.setdefault("messages", QUESTION)
    body.setdefault("temperature", 0)
    body.setdefault("max_tokens", 16)
    response = httpx.post(f"{fleet.base_url(name)}/{route}", json=body, timeout=600)
    assert response.status_code == 200, response.text
    return response.json()


def content(answer: dict[str, Any], index: int = 0) -> str:
    return str(answer["choices"][index]["message"]["content"])


def stream_text(fleet: FleetHandle, name: str, **body: Any) -> tuple[str, list[dict[str, Any]]]:
    body.setdefault("messages", QUESTION)
    body.setdefault("temperature", 0)
    body.setdefault("max_tokens", 16)
    url = f"{fleet.base_url(name)}/chat/completions"
    text = httpx.post(url, json={**body, "stream": True}, timeout=600).text
    events = [line.removeprefix("data: ") for line in text.splitlines() if line]
    chunks = [json.loads(e) for e in events if e != "[DONE]"]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    return "".join(d.get("content") or "" for d in deltas), chunks


def reasoned(answer: dict[str, Any], field: str = "reasoning") -> tuple[Any, Any, Any]:
    choice = answer["choices"][0]
    return choice["message"].get(field), choice["message"]["content"], choice["finish_reason"]


# --- the emulated reasoning model ---------------------------------------------------------


def test_an_honest_reasoning_member_answers_as_the_reference_emulation(
    fleet: FleetHandle,
) -> None:
    config = LlamaCppReference(engine="llama_cpp", emulate_reasoning={}, n_threads=1)
    engine = LlamaCppEngine(config)
    for level, max_tokens in (("low", 48), ("medium", 64), ("high", 64)):
        params = RequestParams(temperature=0, max_tokens=max_tokens)
        reference = engine.complete_sync(
            CompletionRequest(
                probe_id="p",
                probe_hash="h",
                sample_index=0,
                messages=[Message(role="user", content="What is 7 + 5?")],
                params=params,
                reasoning_effort=level,
            )
        )
        messages = [{"role": "user", "content": "What is 7 + 5?"}]
        ours = post(
            fleet, "thinker", messages=messages, max_tokens=max_tokens, reasoning_effort=level
        )
        assert reasoned(ours) == (reference.reasoning, reference.text, reference.finish_reason)
        assert ours["usage"]["prompt_tokens"] == reference.usage.prompt_tokens
        assert ours["usage"]["completion_tokens"] == reference.usage.completion_tokens
        assert "completion_tokens_details" not in ours["usage"]
        other = post(
            fleet,
            "thinker-rc",
            messages=messages,
            max_tokens=max_tokens,
            reasoning={"effort": level},
        )
        assert reasoned(other, "reasoning_content") == reasoned(ours)
    # the whole budget spent thinking: no answer
    assert reasoned(ours)[1:] == (None, "length")


def test_reasoning_leak_and_effort_ignored_on_the_real_model(fleet: FleetHandle) -> None:
    low = post(fleet, "thinker", max_tokens=64, reasoning_effort="low")
    medium = post(fleet, "thinker", max_tokens=64, reasoning_effort="medium")
    assert reasoned(low) != reasoned(medium)
    thought, answer, _ = reasoned(low)
    leak = post(fleet, "leaky", max_tokens=64, reasoning_effort="low")
    assert reasoned(leak) == (None, f"<think>{thought}</think>\n\n{answer}", "stop")
    flat = post(fleet, "flat", max_tokens=64, reasoning_effort="low")
    assert reasoned(flat) == reasoned(medium)
    assert flat["usage"] == medium["usage"]


def test_a_streamed_reasoning_answer_is_the_whole_one(fleet: FleetHandle) -> None:
    whole = post(fleet, "thinker", max_tokens=64, reasoning_effort="low")
    text, chunks = stream_text(fleet, "thinker", max_tokens=64, reasoning_effort="low")
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    thought = "".join(d.get("reasoning") or "" for d in deltas)
    assert (thought, text) == reasoned(whole)[:2]


# --- structured output, seeds, choices, stops, logprobs, penalties --------------------------


def test_honest_members_honour_response_format(fleet: FleetHandle) -> None:
    free = content(post(fleet, "plain", max_tokens=24))
    with pytest.raises(ValueError):
        json.loads(free)
    # the grammar opens an object where the free answer is prose (greedy, the small model
    # may go on adding keys until max_tokens cuts it)
    anything = post(fleet, "plain", max_tokens=40, response_format={"type": "json_object"})
    assert content(anything).startswith("{") and not free.lstrip().startswith("{")
    city = json.loads(content(post(fleet, "plain", max_tokens=40, response_format=CITY)))
    assert isinstance(city["city"], str)
    # a reasoning member constrains its answer, not its reasoning
    thought, answer, _ = reasoned(
        post(fleet, "thinker", max_tokens=80, reasoning_effort="low", response_format=CITY)
    )
    assert isinstance(json.loads(answer)["city"], str)
    with pytest.raises(ValueError):
        json.loads(thought)


def test_drop_response_format_answers_unconstrained(fleet: FleetHandle) -> None:
    dropped = content(post(fleet, "loose", max_tokens=24, response_format=CITY))
    assert dropped == content(post(fleet, "plain", max_tokens=24))


def test_a_seed_repeats_a_sampled_answer_noise_included(fleet: FleetHandle) -> None:
    def sample(name: str, **body: Any) -> str:
        return content(post(fleet, name, temperature=1.0, max_tokens=24, **body))

    first = sample("noisy", seed=123)
    assert sample("noisy", seed=123) == first
    assert stream_text(fleet, "noisy", temperature=1.0, max_tokens=24, seed=123)[0] == first
    assert len({first, sample("noisy", seed=124), sample("noisy")}) == 3
    assert len({sample("unseeded", seed=123) for _ in range(3)}) == 3


def test_n_choices_are_sampled_each_on_its_own(fleet: FleetHandle) -> None:
    answer = post(fleet, "plain", n=3, temperature=1.0, seed=9, max_tokens=12)
    texts = [content(answer, i) for i in range(3)]
    assert [c["index"] for c in answer["choices"]] == [0, 1, 2]
    assert len(set(texts)) == 3
    again = post(fleet, "plain", n=3, temperature=1.0, seed=9, max_tokens=12)
    assert [content(again, i) for i in range(3)] == texts
    one = post(fleet, "plain", temperature=1.0, seed=9, max_tokens=12)
    assert content(one) == texts[0]
    assert answer["usage"]["completion_tokens"] > one["usage"]["completion_tokens"]


def test_stop_strings_end_the_answer_and_never_show(fleet: FleetHandle) -> None:
    full = content(post(fleet, "plain", max_tokens=24))
    word = full.split()[2]
    cut = post(fleet, "plain", max_tokens=24, stop=[word])
    assert content(cut) == full[: full.index(word)]
    assert word not in content(cut) and cut["choices"][0]["finish_reason"] == "stop"
    assert stream_text(fleet, "plain", max_tokens=24, stop=[word])[0] == content(cut)


def test_logprobs_and_top_logprobs(fleet: FleetHandle) -> None:
    answer = post(fleet, "plain", max_tokens=8, logprobs=True, top_logprobs=3)
    entries = answer["choices"][0]["logprobs"]["content"]
    assert "".join(e["token"] for e in entries) == content(answer)
    assert all(len(e["top_logprobs"]) == 3 and e["logprob"] <= 0 for e in entries)
    assert all(e["logprob"] == e["top_logprobs"][0]["logprob"] for e in entries)  # greedy
    bare = post(fleet, "plain", max_tokens=8, logprobs=True)["choices"][0]["logprobs"]["content"]
    assert [e["token"] for e in bare] == [e["token"] for e in entries]
    assert post(fleet, "plain", max_tokens=8)["choices"][0]["logprobs"] is None


def test_presence_and_frequency_penalties_reach_the_sampler(fleet: FleetHandle) -> None:
    cats = [{"role": "user", "content": "Write the word cat ten times."}]
    plain = content(post(fleet, "plain", messages=cats, max_tokens=24))
    frequency = content(post(fleet, "plain", messages=cats, max_tokens=24, frequency_penalty=2))
    presence = content(post(fleet, "plain", messages=cats, max_tokens=24, presence_penalty=2))
    assert plain.lower().count("cat,") > frequency.lower().count("cat,")
    assert len({plain, frequency, presence}) == 3
    url = f"{fleet.base_url('plain')}/chat/completions"
    refused = httpx.post(url, json={"messages": cats, "presence_penalty": 3}, timeout=10)
    assert refused.status_code == 400


# --- routers and streamed tool calls ------------------------------------------------------


def test_routers_on_the_real_model(fleet: FleetHandle) -> None:
    pin = {"only": ["Groq"], "allow_fallbacks": False}
    answer = post(fleet, "router", max_tokens=8, provider=pin)
    assert answer["provider"] == "Groq"
    assert content(answer) == content(post(fleet, "plain", max_tokens=8))  # the same model
    _, chunks = stream_text(fleet, "router", max_tokens=8, provider=pin)
    assert {c["provider"] for c in chunks} == {"Groq"}
    completion = post(fleet, "router", "completions", prompt="Hello", max_tokens=2, provider=pin)
    assert completion["provider"] == "Groq"
    named = {post(fleet, "fallback", max_tokens=1, provider=pin)["provider"] for _ in range(12)}
    assert named == {"Groq", "Fallback-Host"}


def test_stream_tools_differ_on_the_real_model(fleet: FleetHandle) -> None:
    suite = yaml.safe_load((ROOT / "probes" / "tools.yaml").read_text())
    case = next(c for c in suite["cases"] if c["id"] == "order-delivery")
    body = {"messages": case["messages"], "tools": case["params"]["tools"], "max_tokens": 64}
    (whole,) = post(fleet, "streamy", **body)["choices"][0]["message"]["tool_calls"]
    (honest,) = post(fleet, "plain", **body)["choices"][0]["message"]["tool_calls"]
    assert whole == honest and json.loads(whole["function"]["arguments"])["order_id"] == "A-1042"

    def streamed_arguments(name: str) -> str:
        _, chunks = stream_text(fleet, name, **body)
        deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
        calls = [t for d in deltas for t in d.get("tool_calls") or []]
        return "".join(t["function"].get("arguments") or "" for t in calls)

    assert streamed_arguments("plain") == honest["function"]["arguments"]
    assert streamed_arguments("streamy") == honest["function"]["arguments"][:-1]
