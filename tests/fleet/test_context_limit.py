"""`context_limit`: a fleet member whose context is shorter than the model's refuses a longer
chat prompt with vLLM's 400, answers a shorter one honestly, and the auditor records the
refusal as `context_length_exceeded`; and a fleet spec's `n_ctx` sizes the model contexts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, ClassVar

import httpx
import pytest
from auditor_fleet import (
    DEFAULT_MODEL,
    Backend,
    ChatRequest,
    EchoBackend,
    FleetMember,
    FleetSpec,
    Generation,
    LlamaBackend,
    backends,
    pick_members,
)
from auditor_fleet.demo import EXPECTED
from auditor_fleet.llama_model import N_CTX
from auditor_fleet.process import FleetHandle, running_fleet
from auditor_fleet.server import vllm_context_error
from auditor_fleet.spec import FAULT_STRENGTH, parse_fleet_spec
from auditor_fleet.tools import ToolHandling
from helpers.openai import WEATHER_TOOL
from pydantic import ValidationError

from auditor.config import ProviderConfig
from auditor.providers import wire
from auditor.providers.context_length import ContextOverflow
from auditor.providers.openai_compatible import OpenAICompatibleAdapter
from auditor.records import CompletionRequest, ErrorClass, Message, RequestParams

LIMIT = 20  # echo members count a prompt as its words + 4 a message


@pytest.fixture(scope="module")
def fleet() -> Iterator[FleetHandle]:
    members = [
        FleetMember(name="honest", port=0),
        FleetMember(name="short", port=0, fault="context_limit", strength=LIMIT),
    ]
    with running_fleet(FleetSpec(members=members, seed=3)) as handle:
        yield handle


def words(n: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": " ".join(f"w{i}" for i in range(n))}]


def post(fleet: FleetHandle, name: str, **body: Any) -> httpx.Response:
    body = {"model": DEFAULT_MODEL, "temperature": 0, **body}
    return httpx.post(fleet.base_url(name) + "/chat/completions", json=body, timeout=10)


def test_a_longer_prompt_gets_vllms_400(fleet: FleetHandle) -> None:
    response = post(fleet, "short", messages=words(30), max_tokens=16)  # 30 + 4 tokens
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body == vllm_context_error(LIMIT, 34, 16)
    # vLLM's ErrorResponse(error=ErrorInfo(message, type, param, code)), in its field order
    assert list(body) == ["error"] and list(body["error"]) == ["message", "type", "param", "code"]
    assert body["error"]["message"] == (
        "This model's maximum context length is 20 tokens. However, you requested 16 output "
        "tokens and your prompt contains at least 34 input tokens, for a total of at least 50 "
        "tokens. Please reduce the length of the input prompt or the number of requested "
        "output tokens. (parameter=input_tokens, value=34)"
    )
    assert body["error"]["type"] == "BadRequestError" and body["error"]["code"] == 400


def test_a_shorter_prompt_is_answered_honestly(fleet: FleetHandle) -> None:
    for n in (5, LIMIT - 4):  # the last one is exactly at the limit
        faulty, honest = (
            post(fleet, m, messages=words(n), max_tokens=16) for m in ("short", "honest")
        )
        assert faulty.status_code == honest.status_code == 200
        assert faulty.json()["choices"] == honest.json()["choices"]
        assert faulty.json()["usage"] == honest.json()["usage"]
    assert post(fleet, "short", messages=words(LIMIT - 3)).status_code == 400


def test_streamed_unset_max_tokens_and_tools(fleet: FleetHandle) -> None:
    streamed = post(fleet, "short", messages=words(30), stream=True)
    assert streamed.status_code == 400 and streamed.json() == vllm_context_error(LIMIT, 34, 1)
    # offered tools are rendered into the prompt and counted with it
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    request = ChatRequest(messages=messages, tools=[WEATHER_TOOL])
    counted = EchoBackend().count_prompt(ToolHandling.prepare(request))
    assert counted > LIMIT >= EchoBackend().count_prompt(ChatRequest(messages=messages))
    refused = post(fleet, "short", messages=messages, tools=[WEATHER_TOOL], max_tokens=8)
    assert refused.json() == vllm_context_error(LIMIT, counted, 8)
    assert post(fleet, "short", messages=messages, max_tokens=8).status_code == 200


async def test_the_auditor_records_the_refusal(fleet: FleetHandle) -> None:
    config = ProviderConfig(name="short", base_url=fleet.base_url("short"), model=DEFAULT_MODEL)
    adapter = OpenAICompatibleAdapter(config)
    try:
        results = [
            await adapter.complete(
                CompletionRequest(
                    probe_id="ladder",
                    probe_hash="h",
                    sample_index=0,
                    messages=[Message(role="user", content=" ".join(["w"] * n))],
                    params=RequestParams(temperature=0, max_tokens=16),
                    stream=stream,
                )
            )
            for n, stream in ((30, False), (30, True), (10, False))
        ]
    finally:
        await adapter.aclose()
    for refused in results[:2]:
        assert refused.error_class == ErrorClass.CONTEXT_LENGTH_EXCEEDED
        assert refused.status_code == 400 and refused.attempts == 1
        assert ContextOverflow.from_error_message(refused.error_message) == ContextOverflow(
            prompt_tokens=34, limit=LIMIT, completion_tokens=16, prompt_count="at_least"
        )
    assert results[2].ok
    body = json.dumps(vllm_context_error(LIMIT, 34, 16)).encode()
    assert wire.http_error(400, body).error_class == ErrorClass.CONTEXT_LENGTH_EXCEEDED


def test_the_fault_is_registered() -> None:
    assert EXPECTED["context_limit"] == ("deviant", "context_truncation")
    meaning, default = FAULT_STRENGTH["context_limit"]
    assert "tokens" in meaning and default == 1024
    member = FleetMember(name="c", port=0, fault="context_limit")
    assert member.effective_strength() == 1024
    with pytest.raises(ValidationError, match="whole number"):
        FleetMember(name="c", port=0, fault="context_limit", strength=100.5)
    assert FleetMember(name="c", port=0, fault="context_limit", strength=3000.0).strength == 3000
    spec = FleetSpec(members=[FleetMember(name="a", port=8101, backend="llama")])
    (added,) = pick_members(spec, ["context_limit=1500"]).members
    assert (added.fault, added.strength, added.backend) == ("context_limit", 1500, "llama")


# --- n_ctx ------------------------------------------------------------------------------------


@backends.register("test-fleet-settings")
class _Recorder(Backend):
    """Records the fleet spec it was made for."""

    seen: ClassVar[list[int | None]] = []

    @classmethod
    def for_fleet(cls, spec: FleetSpec) -> Backend:
        cls.seen.append(spec.n_ctx)
        return cls()

    def generate(self, request: ChatRequest, on_text: Any = None) -> Generation:
        return Generation(text="ok", prompt_tokens=1, completion_tokens=1)


def test_a_spec_may_size_the_model_contexts() -> None:
    member = {"name": "a", "port": 8101, "backend": "llama"}
    assert FleetSpec(members=[FleetMember(**member)]).n_ctx is None
    spec = parse_fleet_spec(json.dumps({"n_ctx": 8448, "members": [member]}))
    assert spec.n_ctx == 8448
    assert pick_members(spec, ["a"]).n_ctx == 8448
    for bad in (100, 10**6, 2048.5):
        with pytest.raises(ValidationError):
            FleetSpec(members=[FleetMember(**member)], n_ctx=bad)  # type: ignore[arg-type]
    # the llama backend takes it (building one loads nothing), echo has no context
    assert LlamaBackend.for_fleet(spec).n_ctx == 8448
    assert LlamaBackend.for_fleet(spec.model_copy(update={"n_ctx": None})).n_ctx == N_CTX
    assert isinstance(EchoBackend.for_fleet(spec), EchoBackend)
    # a running fleet builds its backends from the spec
    recorded = FleetSpec(
        members=[FleetMember(name="r", port=0, backend="test-fleet-settings")], n_ctx=4096
    )
    with running_fleet(recorded):
        pass
    assert _Recorder.seen[-1] == 4096


# --- on the real model ------------------------------------------------------------------------


@pytest.mark.model
@pytest.mark.slow
def test_on_the_model_the_limit_counts_template_tokens_and_n_ctx_holds_more() -> None:
    """One fleet with a 4096-token context: an honest member answers a prompt of about 2,500
    tokens (past the default 2,048), and a `context_limit` member refuses it with the count
    the honest one bills, while answering a short prompt as the honest one does."""
    members = [
        FleetMember(name="honest", port=0, backend="llama", noise=0.0),
        FleetMember(name="short", port=0, backend="llama", noise=0.0, fault="context_limit"),
    ]
    spec = FleetSpec(members=members, n_ctx=4096)
    long = [{"role": "user", "content": "one two three four five " * 500 + "Count."}]
    short = [{"role": "user", "content": "What is the capital of France?"}]
    with running_fleet(spec, timeout_s=180) as fleet:

        def ask(name: str, messages: list[dict[str, str]]) -> httpx.Response:
            body = {"model": DEFAULT_MODEL, "messages": messages, "max_tokens": 4, "temperature": 0}
            return httpx.post(fleet.base_url(name) + "/chat/completions", json=body, timeout=300)

        honest = ask("honest", long)
        assert honest.status_code == 200
        billed = honest.json()["usage"]["prompt_tokens"]
        assert N_CTX < billed < 4096
        refused = ask("short", long)
        assert refused.status_code == 400
        assert refused.json() == vllm_context_error(1024, billed, 4)
        answered, expected = ask("short", short), ask("honest", short)
        assert answered.status_code == 200
        assert answered.json()["choices"] == expected.json()["choices"]
