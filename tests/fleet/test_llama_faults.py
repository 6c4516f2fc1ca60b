"""The drawn fault parameters on the real packaged GGUF: usage as sent, requantized weights
named by type and mixed in, the server's sampler defaults, and the sampling fields beyond
temperature and top_p, spoken to by the official openai client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from auditor_fleet import DEFAULT_MODEL, FleetMember, FleetSpec, LlamaBackend
from auditor_fleet.demo import build_weights
from auditor_fleet.llama_model import shared_model
from auditor_fleet.process import FleetHandle, running_fleet
from auditor_fleet.variants import CACHE_ENV, requantized_path

from auditor.providers.continuation import ChatTemplate
from auditor.providers.llama_cpp import packaged_model_path

pytestmark = [pytest.mark.model, pytest.mark.slow]

PIRATE = "You are a pirate. Answer like a pirate and say arr."
MEMBERS: list[dict[str, Any]] = [
    {"name": "exact"},
    {"name": "pirate", "fault": "persona", "persona_text": PIRATE, "usage_as_sent": True},
    {"name": "raw", "fault": "wrong_template", "usage_as_sent": True},
    {"name": "short", "fault": "truncate_context", "strength": 16, "usage_as_sent": True},
    {"name": "q2", "fault": "quantized", "qtype": "Q2_K"},
    {"name": "qmix", "fault": "quantized_mix", "strength": 0.5},
    {"name": "server", "fault": "sampler_defaults"},
    {"name": "top1", "fault": "sampler_defaults", "sampler": {"top_k": 1}},
]
QUESTION = "What is the capital of France? Answer in one word."
MESSAGES = [{"role": "user", "content": QUESTION}]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetHandle]:
    members = [FleetMember(port=0, backend="llama", noise=0.0, **m) for m in MEMBERS]
    with running_fleet(FleetSpec(members=members, seed=5), timeout_s=180) as handle:
        yield handle


def client(fleet: FleetHandle, name: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=fleet.base_url(name), api_key="x", max_retries=0, timeout=120)


def chat(fleet: FleetHandle, name: str, content: str = QUESTION, **kwargs: Any) -> Any:
    kwargs.setdefault("messages", [{"role": "user", "content": content}])
    kwargs.setdefault("temperature", 0)
    kwargs.setdefault("max_tokens", 8)
    return client(fleet, name).chat.completions.create(model=DEFAULT_MODEL, **kwargs)


def text(completion: Any) -> str:
    return completion.choices[0].message.content


def test_usage_as_sent_hides_the_prompt_faults(fleet: FleetHandle) -> None:
    long = " ".join(f"word{i}" for i in range(60)) + " " + QUESTION
    for content in (QUESTION, long):
        honest = chat(fleet, "exact", content)
        for name in ("pirate", "raw", "short"):
            faulty = chat(fleet, name, content)
            assert faulty.usage.prompt_tokens == honest.usage.prompt_tokens, name
            total = faulty.usage.prompt_tokens + faulty.usage.completion_tokens
            assert faulty.usage.total_tokens == total

    # the faults still act: another prompt was run (noise 0: the logprobs tell)
    def logprobs(name: str, content: str = QUESTION) -> list[float]:
        answer = chat(fleet, name, content, max_tokens=4, logprobs=True)
        return [t.logprob for t in answer.choices[0].logprobs.content]

    assert logprobs("pirate") != logprobs("exact")
    assert logprobs("raw") != logprobs("exact")
    assert logprobs("short", long) != logprobs("exact", long)

    # streamed, the usage chunk bills the same; a text completion of the prompt as sent too
    whole = chat(fleet, "pirate", max_tokens=12)
    chunks = list(
        chat(fleet, "pirate", max_tokens=12, stream=True, stream_options={"include_usage": True})
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text(whole)
    assert chunks[-1].usage.model_dump() == whole.usage.model_dump()
    prompt = ChatTemplate.from_llama(shared_model(packaged_model_path())).render(MESSAGES)
    completion = client(fleet, "pirate").completions.create(
        model=DEFAULT_MODEL, prompt=prompt, max_tokens=1, temperature=0
    )
    assert completion.usage.prompt_tokens == whole.usage.prompt_tokens


def test_quantized_members_run_on_the_named_type_and_mix_it_in(fleet: FleetHandle) -> None:
    def first_logprob(name: str) -> float:
        answer = chat(fleet, name, max_tokens=1, logprobs=True)
        return answer.choices[0].logprobs.content[0].logprob

    honest, q2 = first_logprob("exact"), first_logprob("q2")
    assert honest != q2
    mixed = [first_logprob("qmix") for _ in range(8)]
    assert set(mixed) == {honest, q2}  # some requests on each set of weights


def test_sampler_defaults_are_llama_servers_whatever_the_request_says(
    fleet: FleetHandle,
) -> None:
    greedy = text(chat(fleet, "exact", max_tokens=12))
    assert text(chat(fleet, "server", max_tokens=12)) == greedy  # temperature 0 stays greedy
    prompt = "Write a short line about the sea."
    differs = 0
    for seed in range(3):
        asked = {"temperature": 1.0, "top_p": 1.0, "seed": seed, "max_tokens": 16}
        served = text(chat(fleet, "server", prompt, **asked, extra_body={"top_k": 0}))
        full = text(chat(fleet, "exact", prompt, **asked))
        # an honest member asked for llama-server's defaults samples exactly as it does
        defaults = {"top_k": 40, "min_p": 0.05}
        told = text(chat(fleet, "exact", prompt, **{**asked, "top_p": 0.95}, extra_body=defaults))
        assert served == told
        differs += served != full
    assert differs >= 1
    # top_k 1 is greedy at any temperature
    hot = {text(chat(fleet, "top1", max_tokens=12, temperature=1.5, seed=s)) for s in range(3)}
    assert hot == {greedy}
    # and it is the server's setting for text completions too
    completion = client(fleet, "top1").completions.create(
        model=DEFAULT_MODEL, prompt="The sea is", max_tokens=8, temperature=1.5, seed=1
    )
    plain = client(fleet, "exact").completions.create(
        model=DEFAULT_MODEL, prompt="The sea is", max_tokens=8, temperature=0
    )
    assert completion.choices[0].text == plain.choices[0].text


def test_honest_members_honour_the_extra_sampling_fields(fleet: FleetHandle) -> None:
    prompt = "Write the word cat five times."
    plain = text(chat(fleet, "exact", prompt, max_tokens=24))
    penalized = text(
        chat(fleet, "exact", prompt, max_tokens=24, extra_body={"repetition_penalty": 1.3})
    )
    assert (
        plain.count("Cat,") >= 5 > penalized.count("Cat,")
    )  # at temperature 0 too, as in llama.cpp
    alias = text(chat(fleet, "exact", prompt, max_tokens=24, extra_body={"repeat_penalty": 1.3}))
    assert alias == penalized
    # top_k 1 is greedy; min_p 1 keeps the top token alone
    for extra in ({"top_k": 1}, {"min_p": 1.0}):
        hot = {
            text(
                chat(
                    fleet, "exact", prompt, max_tokens=12, temperature=1.5, seed=s, extra_body=extra
                )
            )
            for s in range(2)
        }
        assert hot == {text(chat(fleet, "exact", prompt, max_tokens=12))}


def test_build_weights_builds_what_the_quantization_faults_need(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    spec = FleetSpec(
        members=[
            FleetMember(name="a", port=0, fault="quantized", qtype="Q4_0", backend="llama"),
            FleetMember(name="b", port=0, fault="quantized_mix", backend="llama"),
            FleetMember(name="c", port=0, fault="quantized_mix", qtype="Q4_0", backend="llama"),
        ]
    )
    said: list[str] = []
    build_weights(spec, said.append)
    src = LlamaBackend().model_path
    assert requantized_path(src, "Q4_0").is_file() and requantized_path(src, "Q2_K").is_file()
    assert [line for line in said if line.startswith("building")] == [
        "building the Q4_0 weights for a (once; cached) ...",
        "building the Q2_K weights for b (once; cached) ...",
    ]
