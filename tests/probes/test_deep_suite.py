"""The daily `deep` suite (probes/deep.yaml): what it holds, and that it fits the context."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest
from auditor_fleet.llama_model import N_CTX

from auditor.config import LlamaCppReference
from auditor.probes import Suite, expand_requests, load_suite

PROBES = Path(__file__).resolve().parents[2] / "probes"


@pytest.fixture(scope="module")
def deep() -> Suite:
    return load_suite("deep", PROBES)


def test_deep_suite_loads_with_its_three_parts(deep: Suite) -> None:
    assert all(c.suite == "deep" for c in deep.cases)
    assert len({c.id for c in deep.cases}) == len(deep.cases)

    sampled = [c for c in deep.cases if "sampling" in c.signals]
    assert len(sampled) == 10
    for case in sampled:
        assert case.samples == 6 and case.params.temperature == 1
        assert 24 <= (case.params.max_tokens or 0) <= 32

    needles = [c for c in deep.cases if c.id.startswith("needle.")]
    assert {c.metadata["length"] for c in needles} == {256, 512, 1024, 2200}
    assert {c.metadata["depth"] for c in needles} == {0.1, 0.5, 0.9}
    assert all("long_context" in c.signals and c.expect is not None for c in needles)

    groups: dict[str, list[str]] = defaultdict(list)
    for case in deep.cases:
        if case.group and case.metadata.get("generator") == "perturbed_arithmetic":
            groups[case.group].append(case.metadata["role"])
            assert case.expect is not None and case.expect.kind == "number"
    assert len(groups) == 8
    assert all(sorted(roles) == ["original"] + ["perturbed"] * 3 for roles in groups.values())

    assert len(expand_requests(deep)) == 10 * 6 + 12 + 8 * 4


@pytest.mark.model
def test_deep_needles_fit_the_smallest_context_in_use(deep: Suite) -> None:
    """The longest needle, templated and with its answer, fits the demo fleet's context
    (2,048 tokens) and hence the reference's (4,096 by default), in real tokens."""
    from auditor.providers.llama_cpp import LlamaCppEngine

    context = min(N_CTX, LlamaCppReference.model_fields["n_ctx"].default)
    engine = LlamaCppEngine(LlamaCppReference(engine="llama_cpp", n_ctx=context))
    longest = 0
    for case in deep.cases:
        if "long_context" not in case.signals:
            continue
        prompt = engine.chat_prompt([m.model_dump(exclude_none=True) for m in case.messages])
        tokens = len(engine.llm.tokenize(prompt.encode(), add_bos=False, special=True))
        longest = max(longest, tokens + (case.params.max_tokens or 256))
    assert 1700 < longest <= context  # up to about 2k tokens, and no further
