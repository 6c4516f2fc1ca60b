"""Fault parameters a benchmark draws at random (persona text, usage as sent, sampler
settings, quantization type) and the sampling fields beyond temperature and top_p, through
the HTTP layer on the echo backend (no model), and the spec that refuses nonsense."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from auditor_fleet import (
    DEFAULT_MODEL,
    FleetMember,
    FleetSpec,
    default_fleet,
    echo_fleet,
    load_fleet_spec,
    pick_members,
)
from auditor_fleet.backends import _top_words
from auditor_fleet.process import FleetHandle, running_fleet
from auditor_fleet.spec import DEFAULT_SAMPLER, FAULT_STRENGTH
from auditor_fleet.variants import QTYPES

from auditor.errors import UsageError

PIRATE = "You are a pirate. Say arr in every answer, matey."
MEMBERS: list[dict[str, Any]] = [
    {"name": "honest"},
    {"name": "chatty", "fault": "persona"},
    {"name": "pirate", "fault": "persona", "persona_text": PIRATE},
    {"name": "chatty-sent", "fault": "persona", "usage_as_sent": True},
    {"name": "inject-sent", "fault": "inject_system", "usage_as_sent": True},
    {"name": "nosys-sent", "fault": "drop_system", "usage_as_sent": True},
    {"name": "short-sent", "fault": "truncate_context", "strength": 5, "usage_as_sent": True},
    {"name": "capped-sent", "fault": "max_tokens_cap", "strength": 3, "usage_as_sent": True},
    {"name": "server", "fault": "sampler_defaults"},
    {"name": "top2", "fault": "sampler_defaults", "sampler": {"top_k": 2}},
]
HELLO = [{"role": "user", "content": "Say hello to the auditor."}]
WITH_SYSTEM = [{"role": "system", "content": "Be terse and exact."}, *HELLO]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.fixture(scope="module")
def fleet() -> Iterator[FleetHandle]:
    spec = FleetSpec(members=[FleetMember(port=0, **m) for m in MEMBERS], seed=11)
    with running_fleet(spec) as handle:
        yield handle


def chat(fleet: FleetHandle, name: str, **kwargs: Any) -> Any:
    kwargs.setdefault("messages", HELLO)
    client = openai.OpenAI(base_url=fleet.base_url(name), api_key="x", max_retries=0, timeout=10)
    return client.chat.completions.create(model=DEFAULT_MODEL, **kwargs)


def text(completion: Any) -> str:
    return completion.choices[0].message.content


# --- persona_text ---------------------------------------------------------------------------


def test_persona_text_is_the_hidden_system_prompt(fleet: FleetHandle) -> None:
    pirate = chat(fleet, "pirate", temperature=0)
    # the echo backend's answer is a function of the messages: the member ran exactly these
    told = chat(fleet, "honest", messages=[{"role": "system", "content": PIRATE}, *HELLO])
    assert text(pirate) == text(told) and pirate.usage == told.usage
    # the caller's system text is kept after it, in the same system message
    both = chat(fleet, "pirate", messages=WITH_SYSTEM)
    joined = [{"role": "system", "content": f"{PIRATE}\n\nBe terse and exact."}, *HELLO]
    assert text(both) == text(chat(fleet, "honest", messages=joined))
    # without persona_text, the built-in persona (another, longer text)
    chatty = chat(fleet, "chatty")
    assert text(chatty) not in (text(pirate), text(chat(fleet, "honest")))
    assert chatty.usage.prompt_tokens > pirate.usage.prompt_tokens + 20


# --- usage_as_sent ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "messages"),
    [
        ("chatty-sent", HELLO),
        ("chatty-sent", WITH_SYSTEM),
        ("inject-sent", WITH_SYSTEM),
        ("nosys-sent", WITH_SYSTEM),
        ("short-sent", WITH_SYSTEM),
    ],
)
def test_usage_as_sent_bills_the_prompt_an_honest_member_would(
    fleet: FleetHandle, name: str, messages: list[dict[str, str]]
) -> None:
    honest = chat(fleet, "honest", messages=messages, temperature=0)
    faulty = chat(fleet, name, messages=messages, temperature=0)
    assert text(faulty) != text(honest)  # the fault still acts on the prompt
    assert faulty.usage.prompt_tokens == honest.usage.prompt_tokens  # but the bill hides it
    assert faulty.usage.completion_tokens == len(text(faulty).split())
    assert faulty.usage.total_tokens == faulty.usage.prompt_tokens + faulty.usage.completion_tokens
    stream = chat(
        fleet,
        name,
        messages=messages,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text(faulty)
    assert chunks[-1].usage.model_dump() == faulty.usage.model_dump()


def test_usage_as_sent_counts_the_offered_tools_too(fleet: FleetHandle) -> None:
    kwargs: dict[str, Any] = {"messages": WITH_SYSTEM, "temperature": 0, "tools": [WEATHER]}
    honest = chat(fleet, "honest", **kwargs)
    assert (
        honest.usage.prompt_tokens > chat(fleet, "honest", messages=WITH_SYSTEM).usage.prompt_tokens
    )
    assert chat(fleet, "chatty-sent", **kwargs).usage.prompt_tokens == honest.usage.prompt_tokens
    assert chat(fleet, "nosys-sent", **kwargs).usage.prompt_tokens == honest.usage.prompt_tokens


def test_usage_as_sent_changes_nothing_for_other_faults(fleet: FleetHandle) -> None:
    capped = chat(fleet, "capped-sent", max_tokens=50)
    assert capped.usage.completion_tokens == 3
    assert capped.usage.prompt_tokens == chat(fleet, "honest").usage.prompt_tokens
    # without it, the prompt faults show in the usage as before
    assert chat(fleet, "chatty").usage.prompt_tokens > chat(fleet, "honest").usage.prompt_tokens


# --- sampling fields and sampler_defaults ---------------------------------------------------


def test_honest_members_honour_top_k_and_min_p(fleet: FleetHandle) -> None:
    greedy = text(chat(fleet, "honest", temperature=0)).split()
    free = {text(chat(fleet, "honest", temperature=1, seed=s)) for s in range(6)}
    assert len(free) >= 5
    # min_p 0.05 cuts every other word at temperature 1 (p = 0.5): the greedy answer
    cut = {
        text(chat(fleet, "honest", temperature=1, seed=s, extra_body={"min_p": 0.05}))
        for s in range(6)
    }
    assert cut == {" ".join(greedy)}
    one = {
        text(chat(fleet, "honest", temperature=2, seed=s, extra_body={"top_k": 1}))
        for s in range(4)
    }
    assert one == {" ".join(greedy)}
    for seed in range(6):
        words = text(chat(fleet, "honest", temperature=2, seed=seed, extra_body={"top_k": 2}))
        assert words != " ".join(greedy)
        for i, word in enumerate(words.split()):
            kept = _top_words(greedy[i], i, 1) if i < len(greedy) else ["the", "a"]
            assert word in kept, (i, word, kept)
    # off (0, -1) is the whole distribution, as when not sent
    for off in (0, -1):
        same = chat(fleet, "honest", temperature=1, seed=3, extra_body={"top_k": off, "min_p": 0})
        assert text(same) == text(chat(fleet, "honest", temperature=1, seed=3))


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"top_k": -2}, "top_k"),
        ({"top_k": "many"}, "top_k"),
        ({"min_p": 1.5}, "min_p"),
        ({"repetition_penalty": 0}, "repetition_penalty"),
        ({"repeat_penalty": -1}, "repeat_penalty"),
    ],
)
def test_bad_sampling_fields_are_400s(
    fleet: FleetHandle, extra: dict[str, Any], param: str
) -> None:
    for route, body in (
        ("/chat/completions", {"messages": HELLO}),
        ("/completions", {"prompt": "hi"}),
    ):
        response = httpx.post(fleet.base_url("honest") + route, json={**body, **extra}, timeout=5)
        assert response.status_code == 400, route
        assert response.json()["error"]["param"] == param


def test_sampling_fields_are_accepted(fleet: FleetHandle) -> None:
    body = {
        "messages": HELLO,
        "temperature": 0.7,
        "top_k": 20,
        "min_p": 0.1,
        "repetition_penalty": 1.1,
        "repeat_penalty": 1.1,
    }
    response = httpx.post(fleet.base_url("honest") + "/chat/completions", json=body, timeout=5)
    assert response.status_code == 200


def test_sampler_defaults_override_the_request_when_it_samples(fleet: FleetHandle) -> None:
    greedy = text(chat(fleet, "honest", temperature=0))
    assert text(chat(fleet, "server", temperature=0)) == greedy
    # llama-server's defaults (min_p 0.05) keep the echo backend's answers greedy at t = 1,
    # whatever the request asks (here: no min_p, no top_k)
    asked = {"min_p": 0, "top_k": 0}
    served = {
        text(chat(fleet, "server", temperature=1, seed=s, extra_body=asked)) for s in range(6)
    }
    assert served == {greedy}
    # its own settings: top_k 2 over the request's 0
    words = greedy.split()
    for seed in range(4):
        answer = text(chat(fleet, "top2", temperature=2, seed=seed, extra_body={"top_k": 0}))
        assert all(
            w in (_top_words(words[i], i, 1) if i < len(words) else ["the", "a"])
            for i, w in enumerate(answer.split())
        )
        honest = text(chat(fleet, "honest", temperature=2, seed=seed, extra_body={"top_k": 2}))
        assert answer == honest  # the same as an honest member asked for top_k 2


# --- the spec -------------------------------------------------------------------------------


def member(**fields: Any) -> FleetMember:
    return FleetMember(name="m", port=1, **fields)


def test_new_fields_and_their_defaults() -> None:
    plain = member()
    assert plain.persona_text is None and plain.usage_as_sent is False
    assert plain.qtype is None and plain.sampler is None
    assert plain.quant_type() is None and plain.sampler_settings() == {}
    assert member(fault="sampler_defaults").sampler_settings() == DEFAULT_SAMPLER
    assert DEFAULT_SAMPLER == {"top_k": 40, "top_p": 0.95, "min_p": 0.05}
    own = member(fault="sampler_defaults", sampler={"top_k": 20, "repeat_penalty": 1.1})
    assert own.sampler_settings() == {"top_k": 20, "repeat_penalty": 1.1}
    assert member(fault="quantized", backend="llama").quant_type() == "Q2_K"
    assert member(fault="quantized", strength=4, backend="llama").quant_type() == "Q4_0"
    assert member(fault="quantized", qtype="Q3_K_M", backend="llama").quant_type() == "Q3_K_M"
    mix = member(fault="quantized_mix", backend="llama")
    assert mix.quant_type() == "Q2_K" and mix.effective_strength() == 0.35
    assert FAULT_STRENGTH["quantized_mix"][1] == 0.35
    assert member(fault="quantized_mix", qtype="Q4_0", backend="llama").quant_type() == "Q4_0"
    assert {"Q2_K", "Q3_K_S", "Q4_0"} <= set(QTYPES) and "Q4_1" not in QTYPES


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"fault": "quantized_mix"}, "needs a model backend"),
        ({"fault": "quantized_mix", "backend": "llama", "strength": 1.5}, "<= 1"),
        ({"fault": "quantized", "backend": "llama", "qtype": "Q9_X"}, "not one the fleet"),
        ({"fault": "quantized", "backend": "llama", "qtype": "Q4_1"}, "not one the fleet"),
        ({"fault": "quantized", "backend": "llama", "qtype": "Q4_0", "strength": 3}, "not both"),
        ({"fault": "variant_mix", "backend": "llama", "qtype": "Q4_0"}, "qtype is for"),
        ({"fault": "honest", "sampler": {"top_k": 40}}, "sampler_defaults fault's"),
        ({"fault": "sampler_defaults", "sampler": {}}, "at least one"),
        ({"fault": "sampler_defaults", "sampler": {"top_k": 2.5}}, "top_k"),
        ({"fault": "sampler_defaults", "sampler": {"top_p": 0}}, "top_p"),
        ({"fault": "sampler_defaults", "sampler": {"min_p": 2}}, "min_p"),
        ({"fault": "sampler_defaults", "sampler": {"repeat_penalty": 0}}, "repeat_penalty"),
        ({"fault": "sampler_defaults", "sampler": {"temperature": 1}}, "sampler"),
        ({"fault": "inject_system", "persona_text": "Be a pirate."}, "persona fault's"),
        ({"fault": "persona", "persona_text": ""}, "persona_text"),
    ],
)
def test_spec_refuses_nonsense(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        member(**fields)


def test_pick_members_takes_the_new_faults() -> None:
    picked = pick_members(default_fleet(), ["acme", "quantized_mix=0.35", "sampler_defaults"])
    assert [(m.name, m.port, m.fault, m.strength, m.backend) for m in picked.members] == [
        ("acme", 8101, "honest", 0.0, "llama"),
        ("quantized-mix", 8112, "quantized_mix", 0.35, "llama"),
        ("sampler-defaults", 8113, "sampler_defaults", 0.0, "llama"),
    ]
    on_echo = pick_members(echo_fleet(), ["sampler_defaults"]).members
    assert [(m.fault, m.backend) for m in on_echo] == [("sampler_defaults", "echo")]
    with pytest.raises(UsageError, match="needs a model backend"):
        pick_members(echo_fleet(), ["quantized_mix"])
    with pytest.raises(UsageError, match="<= 1"):
        pick_members(default_fleet(), ["quantized_mix=2"])


def test_spec_files_carry_the_new_fields(tmp_path: Path) -> None:
    spec = FleetSpec(
        members=[
            FleetMember(
                name="a", port=9100, fault="persona", persona_text=PIRATE, usage_as_sent=True
            ),
            FleetMember(name="b", port=9101, fault="quantized", qtype="Q3_K_S", backend="llama"),
            FleetMember(name="c", port=9102, fault="quantized_mix", strength=0.3, backend="llama"),
            FleetMember(name="d", port=9103, fault="sampler_defaults", sampler={"top_k": 50}),
        ]
    )
    path = tmp_path / "fleet.json"
    path.write_text(json.dumps(spec.model_dump(mode="json")))
    assert load_fleet_spec(path) == spec
