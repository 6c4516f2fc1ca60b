"""Reasoning on the wire: read from `message.reasoning` / `message.reasoning_content` and
their streamed deltas, stored apart from the answer with the field it came in and the
reasoning token count, in every recorded server example (wire_examples/reasoning/, each
citing its source); reasoning left in the content stays there; a malformed reasoning field is
a recorded protocol error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers.openai import chunk, completion, sse

from auditor.config import ProviderConfig, ReasoningRequest
from auditor.providers import wire
from auditor.providers.openai_compatible import OpenAICompatibleAdapter
from auditor.records import CompletionRequest, ErrorClass, Message, RequestParams

EXAMPLES = Path(__file__).parent / "wire_examples" / "reasoning"


def examples() -> list[Any]:
    return [
        pytest.param(json.loads(path.read_text()), id=path.stem)
        for path in sorted(EXAMPLES.glob("*.json"))
    ]


def assemble(example: dict[str, Any]) -> Any:
    if not example["stream"]:
        return wire.parse_completion(json.dumps(example["body"]).encode())
    assembler = wire.StreamAssembler()
    splitter = wire.LineSplitter()
    for line in splitter.feed(sse(*example["chunks"])):
        assembler.feed_line(line)
    return assembler.result()


def test_the_examples_cover_the_servers_and_say_where_they_come_from() -> None:
    found = [p.values[0] for p in examples()]
    engines = {e["engine"] for e in found}
    assert {"vLLM", "SGLang", "llama.cpp server", "OpenRouter"} <= engines
    assert {e["expect"]["reasoning_source"] for e in found} >= {"reasoning", "reasoning_content"}
    assert any(e["stream"] for e in found) and any(not e["stream"] for e in found)
    for example in found:
        assert example["source"] and example["version"]


@pytest.mark.parametrize("example", examples())
def test_each_example_is_read_as_its_server_means_it(example: dict[str, Any]) -> None:
    answer = assemble(example)
    want = example["expect"]
    assert answer.ok, answer.error_message
    assert answer.text == want["content"]
    assert answer.reasoning == want["reasoning"]
    assert answer.reasoning_source == want["reasoning_source"]
    assert answer.usage.reasoning_tokens == want["reasoning_tokens"]
    assert answer.finish_reason == want["finish_reason"]
    assert answer.upstream == want["upstream"]  # a router's top-level `provider`


def test_reasoning_left_in_the_content_is_kept_there_not_stripped() -> None:
    body = completion("<think>2 and 2 make 4.</think>4")
    answer = wire.parse_completion(json.dumps(body).encode())
    assert answer.text == "<think>2 and 2 make 4.</think>4"
    assert answer.reasoning is None and answer.reasoning_source is None


def test_both_fields_prefer_reasoning_and_an_empty_one_gives_way() -> None:
    body = completion("4")
    body["choices"][0]["message"].update(reasoning="", reasoning_content="sum it")
    answer = wire.parse_completion(json.dumps(body).encode())
    assert (answer.reasoning, answer.reasoning_source) == ("sum it", "reasoning_content")
    body["choices"][0]["message"].update(reasoning="add", reasoning_content="add")
    answer = wire.parse_completion(json.dumps(body).encode())
    assert (answer.reasoning, answer.reasoning_source) == ("add", "reasoning")


@pytest.mark.parametrize("bad", [{"text": "x"}, 7, ["a"], True])
def test_a_malformed_reasoning_field_is_a_protocol_error(bad: Any) -> None:
    body = completion("4")
    body["choices"][0]["message"]["reasoning_content"] = bad
    answer = wire.parse_completion(json.dumps(body).encode())
    assert not answer.ok and answer.error_class == ErrorClass.PROTOCOL_ERROR
    assert "reasoning_content is not a string" in (answer.error_message or "")
    assert answer.raw_response == body  # the evidence is kept


def test_a_malformed_streamed_reasoning_delta_is_a_protocol_error() -> None:
    good = chunk()
    good["choices"][0]["delta"] = {"reasoning": "think"}
    bad = chunk()
    bad["choices"][0]["delta"] = {"reasoning": {"nested": 1}}
    assembler = wire.StreamAssembler()
    assembler.feed_line(f"data: {json.dumps(good)}".encode())
    with pytest.raises(wire.WireError) as caught:
        assembler.feed_line(f"data: {json.dumps(bad)}".encode())
    assert caught.value.error_class == ErrorClass.PROTOCOL_ERROR
    assert len(assembler.partial()["chunks"]) == 2


def test_reasoning_tokens_of_the_wrong_shape_are_off_spec_usage() -> None:
    for details in ({"reasoning_tokens": -3}, {"reasoning_tokens": "twelve"}, [1]):
        body = completion("4")
        body["usage"]["completion_tokens_details"] = details
        answer = wire.parse_completion(json.dumps(body).encode())
        assert answer.error_class == ErrorClass.PROTOCOL_ERROR, details
    body = completion("4")
    body["usage"]["completion_tokens_details"] = {"reasoning_tokens": 40, "audio_tokens": None}
    assert wire.parse_completion(json.dumps(body).encode()).usage.reasoning_tokens == 40


def request(effort: str | None) -> CompletionRequest:
    return CompletionRequest(
        probe_id="p",
        probe_hash="h",
        sample_index=0,
        messages=[Message(role="user", content="2+2?")],
        params=RequestParams(max_tokens=64),
        reasoning_effort=effort,
    )


def adapter(**config: Any) -> OpenAICompatibleAdapter:
    return OpenAICompatibleAdapter(
        ProviderConfig(name="p", base_url="http://127.0.0.1:9/v1", model="m", **config)
    )


def test_the_effort_goes_where_each_provider_takes_it() -> None:
    assert (
        adapter(reasoning=ReasoningRequest()).request_body(request("high"))["reasoning_effort"]
        == "high"
    )
    router = adapter(reasoning=ReasoningRequest(parameter="reasoning.effort"))
    assert router.request_body(request("low"))["reasoning"] == {"effort": "low"}
    switch = ReasoningRequest(
        parameter="chat_template_kwargs.enable_thinking", values={"off": False, "on": True}
    )
    own = {"chat_template_kwargs": {"custom": 1}}
    body = adapter(reasoning=switch, params=own).request_body(request("off"))
    assert body["chat_template_kwargs"] == {"enable_thinking": False, "custom": 1}
    # no level asked, or a model that does not reason: nothing is sent
    assert "reasoning_effort" not in adapter(reasoning=ReasoningRequest()).request_body(
        request(None)
    )
    assert "reasoning_effort" not in adapter().request_body(request("high"))


async def test_a_streamed_reasoning_answer_is_stored_whole_through_the_adapter() -> None:
    thinking = chunk()
    thinking["choices"][0]["delta"] = {"reasoning_content": "Two and two "}
    more = chunk()
    more["choices"][0]["delta"] = {"reasoning_content": "make four."}
    usage = {
        "prompt_tokens": 9,
        "completion_tokens": 12,
        "total_tokens": 21,
        "completion_tokens_details": {"reasoning_tokens": 10},
    }
    body = sse(
        thinking, more, chunk("4"), chunk(finish="stop"), chunk(no_choices=True, usage=usage)
    )
    transport = httpx.MockTransport(
        lambda _: httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})
    )
    config = ProviderConfig(name="p", base_url="http://127.0.0.1:9/v1", model="m", stream=True)
    answer = await OpenAICompatibleAdapter(config, transport=transport).complete(request(None))
    assert answer.ok
    assert (answer.text, answer.reasoning) == ("4", "Two and two make four.")
    assert answer.reasoning_source == "reasoning_content"
    assert answer.usage.reasoning_tokens == 10
    assert answer.ttft_s is not None  # the first reasoning token is the first output
