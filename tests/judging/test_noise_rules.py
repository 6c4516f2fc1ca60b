"""The diagnosis rules on answers simulated step by step: each way of serving something else
gets its own name, from the noise model's tests and figures alone (no provider trusted, no
prompt accounting)."""

from __future__ import annotations

import pytest
from helpers.traces import Fault, endpoint

from auditor.comparisons import compare
from auditor.judging.diagnose import diagnose
from auditor.judging.verdict import rejected


def named(fault: Fault, seed: int = 7) -> list[str]:
    reference = endpoint("reference", 0)
    provider = endpoint("provider", seed, noise=0.05, fault=fault)
    comparisons = compare(reference, provider, "t", noise_tolerance=0.2)
    return [d.kind for d in diagnose(rejected(comparisons), comparisons)]


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (Fault(shift=0.9), "quantization"),  # every answer perturbed
        (Fault(temperature=1.0), "sampling_params"),  # greedy requests sampled
        (Fault(long_shift=2.0), "context_truncation"),  # only long prompts move
        (Fault(plain_shift=1.0, share=0.6), "system_prompt"),  # only plain prompts move
    ],
)
def test_each_fault_is_named_first(fault: Fault, kind: str) -> None:
    assert named(fault)[:1] == [kind]


def test_honest_noise_is_named_nothing() -> None:
    assert named(Fault(), seed=3) == []


def test_a_share_of_the_traffic_on_other_weights_is_a_variant() -> None:
    assert named(Fault(shift=0.9, share=0.4))[:1] == ["model_variant"]
