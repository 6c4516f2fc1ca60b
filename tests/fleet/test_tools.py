"""Tool calling on the real packaged GGUF: the reference engine and an honest fleet member give
identical records, the tool faults break calls as real hosts do, and a round of the tools
suite finds a member that does not parse calls."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from auditor_fleet import DEFAULT_MODEL, FleetMember, FleetSpec
from auditor_fleet.llama_model import THREADS_ENV
from auditor_fleet.process import FleetHandle, running_fleet

from auditor.comparisons.tools import tool_use
from auditor.config import AuditorConfig, LlamaCppReference, ProviderConfig
from auditor.probes import load_suite
from auditor.providers.base import ProviderAdapter
from auditor.providers.llama_cpp import LlamaCppEngine
from auditor.records import CompletionRequest, CompletionResponse
from auditor.rounds.run import make_adapter, run_round_async, select
from auditor.storage.db import ensure_schema, make_engine
from auditor.storage.observations import load_observations
from auditor.storage.repository import Store

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parents[2]
SUITE = load_suite("tools", ROOT / "probes")
# The round runs six of the suite's nine cases, to keep within some 40 s of model time: the
# four the packaged model answers with a call, and two it answers in text.
ROUND_CASES = (
    "weather-paris",
    "weather-after-calc",
    "order-delivery",
    "result-repeat",
    "capital",
    "result-answer",
)
MEMBERS: list[dict[str, Any]] = [
    {"name": "exact", "noise": 0.0},
    {"name": "raw", "fault": "tool_parser_raw"},
    {"name": "corrupt", "fault": "tool_args_corrupt", "noise": 0.0},
]


@pytest.fixture(scope="module")
def fleet() -> Iterator[FleetHandle]:
    """One thread for the fleet's model and one for the reference: on 2 cores they then run
    side by side (a model already loaded by another test module keeps its threads)."""
    members = [FleetMember(port=0, backend="llama", **m) for m in MEMBERS]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(THREADS_ENV, "1")
        with running_fleet(FleetSpec(members=members, seed=5), timeout_s=120) as handle:
            yield handle


@pytest.fixture(scope="module")
def engine() -> LlamaCppEngine:
    return LlamaCppEngine(LlamaCppReference(engine="llama_cpp", n_ctx=2048, n_threads=1))


@pytest.fixture
async def members(fleet: FleetHandle) -> AsyncIterator[dict[str, ProviderAdapter]]:
    adapters = {
        f"{m['name']}{'-stream' if stream else ''}": make_adapter(
            ProviderConfig(
                name=m["name"],
                base_url=fleet.base_url(m["name"]),
                model=DEFAULT_MODEL,
                timeout_s=120,
                stream=stream,
            )
        )
        for m in MEMBERS
        for stream in (False, True)
    }
    yield adapters
    for adapter in adapters.values():
        await adapter.aclose()


def request(case_id: str) -> CompletionRequest:
    return CompletionRequest.from_case(SUITE.case(case_id), 0)


def record(response: CompletionResponse) -> tuple[Any, ...]:
    """What the stored sample holds of an answer, besides timing and raw payloads."""
    usage = response.usage
    return (
        response.ok,
        response.text,
        response.tool_calls,
        response.finish_reason,
        usage.prompt_tokens,
        usage.completion_tokens,
    )


@pytest.mark.slow
async def test_an_honest_member_answers_tool_requests_as_the_reference_engine(
    engine: LlamaCppEngine, members: dict[str, ProviderAdapter]
) -> None:
    called = engine.complete_sync(request("result-repeat"))
    assert called.finish_reason == "tool_calls" and called.text is None
    assert called.tool_calls == [
        {
            "id": "call_0",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        }
    ]
    assert record(await members["exact"].complete(request("result-repeat"))) == record(called)
    streamed = await members["exact-stream"].complete(request("result-repeat"))
    assert record(streamed) == record(called)

    answered = engine.complete_sync(request("capital"))
    assert answered.tool_calls is None and "Paris" in (answered.text or "")
    assert record(await members["exact"].complete(request("capital"))) == record(answered)


@pytest.mark.slow
async def test_tool_faults_break_calls_as_real_hosts_do(
    engine: LlamaCppEngine, members: dict[str, ProviderAdapter]
) -> None:
    reference = engine.complete_sync(request("result-repeat"))
    raw = await members["raw"].complete(request("result-repeat"))
    assert raw.ok and raw.tool_calls is None and raw.finish_reason == "stop"
    assert (raw.text or "").lstrip().startswith("<tool_call>")
    corrupt = await members["corrupt"].complete(request("result-repeat"))
    assert corrupt.finish_reason == "tool_calls" and corrupt.tool_calls is not None
    (arguments,) = [c["function"]["arguments"] for c in corrupt.tool_calls]
    assert reference.tool_calls is not None
    assert arguments == reference.tool_calls[0]["function"]["arguments"][:-1]
    with pytest.raises(ValueError):
        json.loads(arguments)


@pytest.mark.slow
async def test_a_round_of_the_tools_suite_finds_the_member_that_does_not_parse_calls(
    fleet: FleetHandle, engine: LlamaCppEngine, tmp_path: Path
) -> None:
    raw = {"name": "raw", "base_url": fleet.base_url("raw"), "model": DEFAULT_MODEL}
    config = AuditorConfig.model_validate(
        {
            "database": f"sqlite:///{tmp_path / 'auditor.db'}",
            "reference": {
                "engine": "llama_cpp",
                "model_path": "packaged",
                "n_ctx": 2048,
                "n_threads": 1,
            },
            "suites": ["tools"],
            "probes_dir": str(ROOT / "probes"),
            "models": [{"name": DEFAULT_MODEL, "providers": [{**raw, "timeout_s": 120}]}],
        }
    )
    db = make_engine(config.database)
    ensure_schema(db)
    store = Store(db)
    suite = SUITE.model_copy(update={"cases": [SUITE.case(c) for c in ROUND_CASES]})
    result = await run_round_async(
        config, store, select(config, suite, None, None), score_likelihood=False
    )
    observations = [o for o in load_observations(store, result.round_id) if o.ok]
    reference = [o for o in observations if o.kind == "reference"]
    assert len(reference) == len(ROUND_CASES)
    assert sum(bool(o.tool_calls) for o in reference) >= 2  # the model does call tools

    provider = [o for o in observations if o.endpoint == "raw"]
    assert all(not o.tool_calls for o in provider)
    tests = {c.result.name: c.result for c in tool_use(reference, provider)}
    assert tests["tool_calls:decision_f1"].statistic == 0.0
    assert tests["violations:tool_decision"].p_value < 1e-3

    # The answers are scored under the prompt the reference generated with: tools offered,
    # tool turns written out (the GGUF's template alone fails on an assistant turn with
    # tool calls and no content).
    answers = store.answers_to_score(result.round_id, DEFAULT_MODEL, "reference_likelihood")
    called = next(a for a in answers if a.text.lstrip().startswith("<tool_call>"))
    assert called.messages[0]["role"] == "system" and "<tools>" in called.messages[0]["content"]
    assert {m["role"] for m in called.messages} <= {"system", "user", "assistant"}
    tokens = engine.score_continuation_sync(called.messages, called.text, 5, 16)
    assert len(tokens) == 16 and sum(t.rank == 0 for t in tokens) >= 12
