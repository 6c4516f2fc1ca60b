"""The capability table and its tests, on the params suite's cases as written, answered the
way an honest host and hosts that drop each parameter answer, scored by the real scorer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from auditor.comparisons.capabilities import capability_table, capability_tests
from auditor.comparisons.observation import Observation
from auditor.judging.diagnose import diagnose
from auditor.judging.verdict import rejected
from auditor.probes import load_suite
from auditor.records import CompletionRequest, CompletionResponse, ErrorClass, ProbeCase
from auditor.scorers.parameters import ParameterScorer

SUITE = load_suite("params", Path(__file__).parents[2] / "probes")


def honest(case: ProbeCase, k: int) -> CompletionResponse:
    """What a host honouring every parameter answers (the reference's kind of answer)."""
    p = case.params
    text = f"answer to {case.messages[-1].content}"
    if p.response_format:
        text = '{"city": "Paris", "animal": "dog", "legs": 8}'
    if (case.metadata.get("pair") and case.metadata.get("penalized")) or (
        p.seed is None and (p.temperature or 0) > 0
    ):
        text += f" (varied {k})"
    choices = [{"index": i} for i in range(p.n or 1)]
    logprobs = [{"token": "a", "logprob": -0.1}] if p.logprobs else None
    return CompletionResponse(
        ok=True, text=text, logprobs=logprobs, raw_response={"choices": choices}
    )


def dropping(parameter: str) -> Any:
    """A host that drops `parameter` from the request and answers as if it was not sent."""

    def answer(case: ProbeCase, k: int) -> CompletionResponse:
        if case.metadata.get("capability") != parameter:
            return honest(case, k)
        if parameter == "presence_penalty":
            return honest(case.model_copy(update={"metadata": {"pair": "x"}}), k)
        if parameter == "seed":
            return honest(case.model_copy(update={"params": case.params.model_copy(
                update={"seed": None})}), k)  # fmt: skip
        dropped = {
            "response_format.json_object": "response_format",
            "response_format.json_schema": "response_format",
        }.get(parameter, parameter)
        params = case.params.model_copy(update={dropped: None})
        response = honest(case.model_copy(update={"params": params}), k)
        if parameter == "stop":
            response = response.model_copy(update={"text": "1, 2, 3, 4, 5,  of \n6"})
        return response

    return answer


def observe(endpoint: str, answer: Any) -> list[Observation]:
    out = []
    for case in SUITE.cases:
        for k in range(case.samples):
            request = CompletionRequest.from_case(case, k)
            response = answer(case, k).model_copy(
                update={"raw_request": request.params.wire() | {"messages": []}}
            )
            scores = {r.metric: r.value for r in ParameterScorer().score(case, response)}
            out.append(
                Observation(
                    model="m", endpoint=endpoint, kind="provider", trusted=False,
                    probe_id=case.id, probe_hash=case.content_hash, sample_index=k,
                    ok=response.ok, text=response.text, finish_reason="stop",
                    prompt_tokens=9, completion_tokens=9, total_tokens=18,
                    error_class=response.error_class.value if response.error_class else None,
                    error_message=response.error_message,
                    case=case.model_dump(mode="json"), scores=scores,
                )
            )  # fmt: skip
    return out


REFERENCE = observe("reference", honest)
PARAMETERS = sorted(
    {str(c.metadata["capability"]) for c in SUITE.cases if "capability" in c.metadata}
)


def test_an_honest_host_honours_every_parameter_and_passes() -> None:
    table = capability_table(REFERENCE, observe("p", honest))
    assert table is not None
    assert {(c.parameter, c.status, c.judged, c.reference) for c in table} == {
        (p, "honoured", "against_reference", "honoured") for p in PARAMETERS
    }
    assert rejected(capability_tests(REFERENCE, observe("p", honest))) == []


@pytest.mark.parametrize(
    ("parameter", "kind"),
    [
        ("response_format.json_object", "other"),
        ("response_format.json_schema", "other"),
        ("stop", "other"),
        ("n", "other"),
        ("logprobs", "other"),
        ("seed", "sampling_params"),
        ("presence_penalty", "sampling_params"),
    ],
)
def test_a_parameter_dropped_silently_is_found_and_named(parameter: str, kind: str) -> None:
    provider = observe("p", dropping(parameter))
    table = {c.parameter: c for c in capability_table(REFERENCE, provider) or []}
    assert table[parameter].status == "ignored"
    assert all(c.status == "honoured" for p, c in table.items() if p != parameter)
    comparisons = capability_tests(REFERENCE, provider)
    [diagnosis] = diagnose(rejected(comparisons), comparisons)
    assert diagnosis.kind == kind and parameter in diagnosis.summary


def test_a_parameter_refused_with_a_4xx_is_rejected_with_its_message() -> None:
    def refusing(case: ProbeCase, k: int) -> CompletionResponse:
        if case.metadata.get("capability") == "n":
            return CompletionResponse(
                ok=False, error_class=ErrorClass.CLIENT_ERROR,
                error_message="HTTP 400: n > 1 is not supported",
            )  # fmt: skip
        return honest(case, k)

    table = {c.parameter: c for c in capability_table(REFERENCE, observe("p", refusing)) or []}
    assert table["n"].status == "rejected" and "not supported" in table["n"].note
    assert rejected(capability_tests(REFERENCE, observe("p", refusing))) == []


def test_without_the_reference_a_parameter_is_judged_on_the_hosts_own_answers() -> None:
    table = {c.parameter: c for c in capability_table([], observe("p", dropping("seed"))) or []}
    assert table["seed"].judged == "own_behaviour" and table["seed"].status == "ignored"
    assert table["seed"].reference is None


def test_a_round_without_parameter_probes_has_no_table() -> None:
    plain = [o for o in REFERENCE if o.probe_id.startswith("json")]
    for o in plain:
        o.case = {**o.case, "metadata": {}}
    assert capability_table([], plain) is None
