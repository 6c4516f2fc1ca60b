"""Prompts refused as longer than the context that the reference answered: a finding about the
provider's context, tested against the tolerated quirk rate; refusals the declared window
allows, or of prompts the reference refused too, are not counted."""

from __future__ import annotations

from typing import Any

from helpers.observations import observation

from auditor.comparisons.observation import Observation
from auditor.comparisons.refusals import context_refusals, refused_where_answered
from auditor.comparisons.rules import Readings, Rejection, rules
from auditor.providers.context_length import ContextOverflow

#: A prompt of probe i is i * 100 tokens as the reference counts it.
PROBES = range(1, 21)


def reference(**fields: Any) -> list[Observation]:
    return [observation(i, endpoint="reference", prompt_tokens=i * 100, **fields) for i in PROBES]


def refusal(probe: int, limit: int = 640, **fields: Any) -> Observation:
    stated = ContextOverflow(prompt_tokens=probe * 100 + 12, limit=limit, completion_tokens=16)
    return observation(
        probe,
        ok=False,
        text=None,
        finish_reason=None,
        prompt_tokens=None,
        completion_tokens=None,
        total_tokens=None,
        error_class="context_length_exceeded",
        error_message=f"{stated.note()}; HTTP 400: This model's maximum context length is ...",
        **fields,
    )


def provider(refuse_from: int | None, **refusal_fields: Any) -> list[Observation]:
    """Answers probes below `refuse_from` (as the reference counts them: probe * 100), refuses
    the rest as too long."""
    return [
        refusal(i, **refusal_fields)
        if refuse_from is not None and i * 100 >= refuse_from
        else observation(i, prompt_tokens=i * 100)
        for i in PROBES
    ]


def test_prompts_the_reference_answered_refused_as_too_long_are_rejected() -> None:
    (c,) = context_refusals(reference(), provider(refuse_from=1500))
    r = c.result
    assert r.name == "refusals:context_length" and c.metric == "context_length"
    assert (r.statistic, r.n) == (6, 20)
    assert r.p_value is not None and r.p_value < 1e-6
    assert r.effect == 6 / 20 and c.moved > 0  # the refused share
    assert r.note == (
        "refuses prompts from 1,500 tokens (the reference's count) that the reference "
        "answered; answers up to 1,400; states a limit of 640"
    )


def test_the_rule_names_the_length_where_it_breaks() -> None:
    (c,) = context_refusals(reference(), provider(refuse_from=1500), window=8192)
    rule = rules.get("context_truncation.refuses_long_prompts")
    readings = Readings([Rejection(c, 1e-5)], [c])
    rejection = rule.match(readings)
    assert rejection is not None and rule.kind == "context_truncation"
    assert rule.describe(rejection, readings) == (
        "refuses prompts from 1,500 tokens (the reference's count) that the reference "
        "answered, within the declared window of 8,192; answers up to 1,400; states a limit "
        "of 640 (6 of 20 requests): the context is shorter than the model's"
    )


def test_refusals_the_declared_window_cannot_hold_are_not_counted() -> None:
    # The window holds prompts up to 1,500 tokens with the 16 the request asks for the answer.
    asks = {"case": {"params": {"temperature": 0.0, "max_tokens": 16}}}
    ref = reference(**asks)
    assert context_refusals(ref, provider(refuse_from=1600, **asks), window=1516) == []
    # The 1,500-token prompt fits with its answer: refusing it counts, the longer ones not.
    (c,) = context_refusals(ref, provider(refuse_from=1500, **asks), window=1516)
    assert (c.result.statistic, c.result.n) == (1, 15)
    assert context_refusals(ref, provider(refuse_from=1500, **asks), window=1515) == []
    # Without a declared window, every refusal of a prompt the reference answered counts.
    (c,) = context_refusals(ref, provider(refuse_from=1600, **asks))
    assert (c.result.statistic, c.result.n) == (5, 20)


def test_no_refusals_is_no_test() -> None:
    # A test that cannot reject would only weaken the provider's others under BH.
    assert context_refusals(reference(), provider(refuse_from=None)) == []


def test_a_prompt_the_reference_refused_too_is_not_counted() -> None:
    ref = [o if o.probe_hash != "h20" else refusal(20, endpoint="reference") for o in reference()]
    answers = [o if o.probe_hash != "h20" else refusal(20) for o in provider(refuse_from=None)]
    assert context_refusals(ref, answers) == []
    assert refused_where_answered(ref, answers) == []
    # One sample of the reference answering the probe is enough.
    ref.append(observation(20, sample_index=1, endpoint="reference", prompt_tokens=2000))
    assert [o.probe_hash for o in refused_where_answered(ref, answers)] == ["h20"]


def test_other_errors_are_neither_refusals_nor_counted() -> None:
    answers = provider(refuse_from=None)
    answers[-1] = observation(20, ok=False, text=None, error_class="server_error")
    assert context_refusals(reference(), answers) == []
    assert refused_where_answered(reference(), answers) == []


def test_a_refusal_without_stated_counts_still_says_what_it_can() -> None:
    ref = [observation(i, endpoint="reference", prompt_tokens=None) for i in PROBES]
    answers = provider(refuse_from=1500)
    for o in answers:
        o.error_message = "context length exceeded; HTTP 500: Input prompt is too big"
    (c,) = context_refusals(ref, answers)
    assert c.result.note == "refuses prompts the reference answered"


def test_nothing_to_compare_without_a_probe_the_reference_answered() -> None:
    assert context_refusals([], provider(refuse_from=1500)) == []
