"""Weight variants of the real packaged GGUF: requantized by llama.cpp, perturbed with gguf."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from auditor_fleet import ChatRequest, FleetMember, LlamaBackend, TextCompletionRequest
from auditor_fleet.variants import (
    CACHE_ENV,
    QTYPES,
    VariantError,
    cache_dir,
    perturb,
    qtype_for_bits,
    requantize,
    tensor_types,
)
from gguf import GGUFReader

from auditor.providers.llama_cpp import packaged_model_path

pytestmark = pytest.mark.model

ONE_TENSOR = r"blk\.0\.ffn_up\.weight"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A variants cache of its own, also where the fleet backend looks (the env variable)."""
    root = tmp_path_factory.mktemp("auditor-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_ENV, str(root))
        yield root / "variants"


def test_strength_picks_the_nearest_type() -> None:
    assert [qtype_for_bits(b) for b in (2, 2.4, 3, 4, 4.6, 6, 7, 16)] == [
        "Q2_K",
        "Q2_K",
        "Q3_K_S",
        "Q4_0",
        "Q5_0",
        "Q5_0",
        "Q8_0",
        "Q8_0",
    ]


@pytest.mark.slow
def test_requantize_builds_once_and_reports_the_fallback_types(cache: Path) -> None:
    src = packaged_model_path()
    assert tensor_types(src) == {"Q4_1": 210, "Q8_0": 1}
    q2 = requantize(src, "Q2_K")
    assert q2.parent == cache_dir() == cache
    assert q2.name.startswith(src.stem) and q2.name.endswith("-quant-Q2_K.gguf")
    # 576-wide rows are no multiple of the 256-wide K-quant blocks: llama.cpp falls back
    assert tensor_types(q2) == {"Q4_0": 180, "Q3_K": 30, "Q8_0": 1}
    built = q2.stat().st_mtime_ns
    assert requantize(src, "Q2_K") == q2 and q2.stat().st_mtime_ns == built
    assert tensor_types(requantize(src, "Q4_0")) == {"Q4_0": 210, "Q8_0": 1}
    assert not list(cache.glob(".*.tmp"))
    with pytest.raises(VariantError, match="unknown"):
        requantize(src, "Q9_X")


@pytest.mark.slow
def test_every_type_a_member_may_name_builds_other_weights(cache: Path) -> None:
    src = packaged_model_path()
    packaged = tensor_types(src)
    for qtype in QTYPES:  # what FleetMember.qtype accepts
        assert tensor_types(requantize(src, qtype)) != packaged, qtype


@pytest.mark.slow
def test_perturb_changes_only_the_selected_tensors(cache: Path) -> None:
    src = packaged_model_path()
    out = perturb(src, 0.2, seed=1, tensors=ONE_TENSOR)
    assert "-perturb-s0.2-seed1-" in out.name
    assert perturb(src, 0.2, seed=1, tensors=ONE_TENSOR) == out
    assert out.stat().st_size == src.stat().st_size
    before = {t.name: t for t in GGUFReader(src).tensors}
    changed = [
        t.name for t in GGUFReader(out).tensors if not np.array_equal(t.data, before[t.name].data)
    ]
    assert changed == ["blk.0.ffn_up.weight"]
    assert perturb(src, 0.2, seed=2, tensors=ONE_TENSOR) != out
    with pytest.raises(VariantError, match="no tensor"):
        perturb(src, 0.2, tensors=r"nothing\.matches")


@pytest.mark.slow
def test_members_run_on_their_variants(cache: Path) -> None:
    backend = LlamaBackend(perturb_scale=0.5, perturb_tensors=r"blk\.[0-3]\.ffn_up\.weight")
    request = ChatRequest(
        messages=[{"role": "user", "content": "Name three colours."}],
        temperature=0,
        max_tokens=6,
        logprobs=True,
    )

    def member(fault: str, strength: float) -> FleetMember:
        return FleetMember(
            name=fault, port=0, fault=fault, strength=strength, backend="llama", noise=0
        )

    def logprobs(fault: str, strength: float = 0.0) -> list[float]:
        generation = backend.bind(member(fault, strength), seed=0).generate(request)
        assert generation.logprobs is not None
        return [t.logprob for t in generation.logprobs]

    honest = logprobs("honest")
    assert logprobs("honest") == honest  # no noise: reproducible
    quantized = logprobs("quantized", 4)
    mixed = logprobs("variant_mix", 1.0)  # every request on the perturbed weights
    assert quantized != honest and mixed != honest and mixed != quantized

    half = backend.bind(member("variant_mix", 0.5), seed=0)
    first = [half.generate(request).logprobs[0].logprob for _ in range(8)]  # type: ignore[index]
    assert set(first) == {honest[0], mixed[0]}  # some requests on each set of weights


@pytest.mark.slow
def test_text_completions_run_on_the_members_weights(cache: Path) -> None:
    backend = LlamaBackend()
    body = TextCompletionRequest(
        prompt="The capital of France is Paris.", echo=True, max_tokens=0, logprobs=1
    )

    def scores(fault: str, strength: float = 0.0) -> list[float | None]:
        member = FleetMember(
            name=fault, port=0, fault=fault, strength=strength, backend="llama", noise=0
        )
        completion = backend.bind(member, seed=0).complete(body)
        assert completion.logprobs is not None
        assert completion.text == body.prompt
        return completion.logprobs.token_logprobs

    honest = scores("honest")
    assert honest[0] is None and scores("honest") == honest
    assert scores("quantized", 4) != honest  # the requantized weights score the text
    assert scores("wrong_template") == honest  # the caller's own text: no prompt format
