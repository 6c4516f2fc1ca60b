"""Comparisons -> verdict, ranked diagnoses, severity and evidence for one provider.

The tests of one provider are combined with Benjamini-Hochberg at level `alpha`; a provider is
`deviant` only if at least one survives. Each surviving test is read by the rules below,
which name what is wrong; the rules look at which metric moved, in which probe scope and in
which direction, never at anything a particular provider is known to do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from auditor.comparisons import Comparison, common_prefix
from auditor.observations import Observation
from auditor.records import Diagnosis, Evidence, TestResult
from auditor.stats import bh_adjust

ALPHA = 0.05
MIN_TESTS_FOR_CONSISTENT = 3
TONE_METRICS = {
    "flattery",
    "emoji_rate",
    "exclamation_rate",
    "markdown_density",
    "questions_back",
    "self_praise",
}
CRITICAL = {"model_variant", "quantization", "context_truncation", "system_prompt", "chat_template"}
EVIDENCE_ITEMS = 3
WIDESPREAD_SHARE = 0.7  # answers moved beyond honest noise: all traffic, not a share of it
SAMPLING_LIKENESS = 0.5  # greedy gaps half those of sampling at temperature 1: sampled
NEAR_TOP_LIKENESS = 0.15  # greedy gaps under this share of sampling's: not sampled


@dataclass(frozen=True)
class Rejected:
    comparison: Comparison
    adjusted_p: float

    @property
    def effect(self) -> float:
        return self.comparison.result.effect or 0.0

    @property
    def strength(self) -> float:
        return max(0.0, min(0.99, 1.0 - self.adjusted_p))


def rejected(comparisons: list[Comparison], alpha: float = ALPHA) -> list[Rejected]:
    tested = [c for c in comparisons if c.result.p_value is not None]
    adjusted = bh_adjust([c.result.p_value for c in tested])
    return [Rejected(c, float(p)) for c, p in zip(tested, adjusted, strict=True) if p <= alpha]


def combined_p(tests: Iterable[TestResult]) -> float | None:
    """The smallest level at which Benjamini-Hochberg rejects any of the tests (None when
    none has a p-value): the provider is deviant at level alpha exactly when this is at most
    alpha."""
    p_values = [t.p_value for t in tests if t.p_value is not None]
    return float(min(bh_adjust(p_values))) if p_values else None


def _find(rej: Iterable[Rejected], metric: str, scope: str | None = None) -> Rejected | None:
    for r in rej:
        if r.comparison.metric == metric and (scope is None or r.comparison.scope == scope):
            return r
    return None


def _shift(r: Rejected) -> float:
    """The median difference in billed prompt tokens, provider minus reference."""
    return r.comparison.direction


def diagnose(rej: list[Rejected], figures: list[Comparison] | None = None) -> list[Diagnosis]:
    """Name what is wrong from the tests that rejected (and the figures beside them, which
    carry no p-value); strongest first."""
    figures = figures or []
    found: dict[str, Diagnosis] = {}

    def add(kind: str, weight: float, r: Rejected, summary: str) -> None:
        confidence = round(weight * r.strength, 3)
        if kind not in found or found[kind].confidence < confidence:
            found[kind] = Diagnosis(kind=kind, confidence=confidence, summary=summary)  # type: ignore[arg-type]

    tokens = {
        s: _find(rej, "prompt_tokens", s) for s in ("all", "long_context", "system_prompt", "short")
    }
    tone = [r for r in rej if r.comparison.metric in TONE_METRICS and r.effect > 0]

    if (r := _find(rej, "stopped_short_at_length")) and r.effect > 0:
        add(
            "max_tokens",
            0.95,
            r,
            f"stops at finish_reason=length below the requested max_tokens "
            f"({r.effect:+.0%} of answers)",
        )
    if (r := _find(rej, "role_leak")) and r.effect > 0:
        add(
            "chat_template",
            0.9,
            r,
            f"role markers or template tokens leak into answers ({r.effect:+.0%})",
        )
    if (r := tokens["long_context"]) and _shift(r) < 0 and not tokens["short"]:
        add(
            "context_truncation",
            0.95,
            r,
            f"long prompts are billed {-_shift(r):.0f} tokens fewer than the "
            "reference tokenizer counts: the context is cut",
        )
    if (r := _find(rej, "expect_pass", "long_context")) and r.effect < 0:
        add(
            "context_truncation",
            0.8,
            r,
            f"fails retrieval from long prompts ({r.effect:+.0%} pass rate)",
        )
    if (r := tokens["system_prompt"]) and not tokens["short"]:
        add(
            "system_prompt",
            0.9,
            r,
            f"requests with a system message are billed {_shift(r):+.0f} tokens "
            "against the reference: the system message is not passed as sent",
        )
    if (r := _find(rej, "expect_pass", "system_prompt")) and r.effect < 0:
        add(
            "system_prompt",
            0.8,
            r,
            f"ignores what the system message says ({r.effect:+.0%} pass rate)",
        )
    if (r := tokens["short"]) and _shift(r) > 0:
        weight = 0.95 if tone else 0.8
        add(
            "system_prompt",
            weight,
            r,
            f"every request is billed {_shift(r):+.0f} tokens more than the "
            "reference counts: hidden instructions are added",
        )
    if (r := tokens["short"]) and _shift(r) < 0:
        add(
            "chat_template",
            0.85,
            r,
            f"prompts are billed {_shift(r):+.0f} tokens against the model's own "
            "chat template: another template is applied",
        )
    for r in tone:
        if not tokens["short"]:
            add(
                "model_variant",
                0.7,
                r,
                f"tone differs from the released weights: {r.comparison.result.name} "
                f"effect {r.effect:+.2f}",
            )
    # Answers whose tokens stay near the reference's top choices are greedy decoding on other
    # weights, not sampling, even where those weights' flatter logits let noise split repeats.
    gap = _find(rej, "ref_gap", "trusted")
    likeness = gap.comparison.sampling_likeness if gap else None
    near_top = likeness is not None and likeness < NEAR_TOP_LIKENESS
    if (r := _find(rej, "repeats_vary")) and r.effect > 0 and not near_top:
        add(
            "sampling_params",
            0.9,
            r,
            "temperature-0 requests give different answers each time: "
            "the request's sampling parameters are not honoured",
        )
    # A prompt that reaches the model changed (prompt accounting) explains changed answers by
    # itself: the greedy comparison names a cause only when the prompts are the same.
    prompt_changed = any(tokens.values())
    if (r := _find(rej, "greedy_early", "trusted")) and r.effect > 0 and not prompt_changed:
        repeats = next((c for c in figures if c.metric == "repeats_vary_figure"), None)
        if repeats is not None and (repeats.result.effect or 0) > 0 and not near_top:
            add(
                "sampling_params",
                0.9,
                r,
                "temperature-0 answers stray from the reference far more than trusted "
                "providers' and vary from one request to the next: the temperature is not honoured",
            )
        else:
            add(
                "model_variant",
                0.6,
                r,
                f"temperature-0 answers stray early from the reference's {r.effect:+.0%} more "
                "often than trusted providers' do: other weights",
            )
            add("quantization", 0.55, r, "or the same weights, more heavily quantized")
    sampling = "sampling_params" in found
    if (r := _find(rej, "ref_gap", "trusted")) and not prompt_changed and not sampling:
        _weights_differ(add, r)
    if (r := _find(rej, "logprob_distance", "trusted")) and r.effect > 0 and not sampling:
        moved = (
            f"returned logprobs of the same tokens differ from the reference's by "
            f"{r.comparison.result.statistic:.3f} nats on average, beyond trusted providers'"
        )
        add("quantization", 0.75, r, f"{moved}: the same weights, more heavily quantized")
        add("model_variant", 0.65, r, f"{moved}: or other weights")
    for metric in ("ref_logprob", "ref_rank"):
        if (r := _find(rej, metric, "sampled")) and not prompt_changed and not sampling:
            _sampled_likelihood(add, r)
    # Other weights move sampled answers too: the MMD names sampling only when nothing else does.
    if (r := _find(rej, "text", "sampled")) and "model_variant" not in found:
        add(
            "sampling_params",
            0.6,
            r,
            f"sampled answers are distributed differently (MMD {r.effect:.3f})",
        )
    f1 = next((c for c in figures if c.metric == "tool_decision_f1"), None)
    against = f" (F1 {f1.result.statistic:.2f} against the reference's decisions)" if f1 else ""
    if (r := _find(rej, "tool_decision_differs")) and r.effect > 0:
        add(
            "tool_calling",
            0.95,
            r,
            f"calls tools where the reference does not, or answers in text where it calls"
            f"{against}: the model's tool calls are not parsed as it writes them",
        )
    if (r := _find(rej, "tool_args_broken")) and r.effect > 0:
        add(
            "tool_calling",
            0.9,
            r,
            "tool-call arguments fall short of the reference's (not JSON, or not valid for the "
            "tool's schema) on the same probes: the calls are mangled on the way out",
        )
    if (r := _find(rej, "tool_args_valid")) and r.effect < 0:
        add(
            "tool_calling",
            0.8,
            r,
            f"fewer tool calls have arguments valid for the tool's schema ({r.effect:+.0%})",
        )
    if (r := _find(rej, "perturbation_gap")) and r.effect > 0:
        add(
            "model_variant",
            0.85,
            r,
            f"solves the original problems but not their perturbed twins (gap "
            f"{r.comparison.result.statistic:+.0%}, {r.effect:+.0%} beyond the reference's): "
            "a benchmark-tuned variant",
        )
    if not found and rej:
        r = min(rej, key=lambda x: x.adjusted_p)
        add(
            "model_variant",
            0.6,
            r,
            f"behaves unlike the reference weights: {r.comparison.result.name} "
            f"effect {r.effect:+.2f}",
        )
    return sorted(found.values(), key=lambda d: d.confidence, reverse=True)


def _weights_differ(add: Callable[[str, float, Rejected, str], None], r: Rejected) -> None:
    """Greedy answers hold tokens the reference would not pick, beyond what trusted
    providers' numeric noise gives, with the same prompt: the weights differ. Nearly every
    answer moved: the same weights degraded throughout, as a heavier quantization does.
    A share moved and the rest match trusted serving: part of the traffic (or of the
    prompts) meets other weights. Weight noise alone cannot tell a heavier quantization
    from a light fine-tune; tone and task scores can (see the tone rule). Gaps as large as
    the reference's own temperature-1 samples show are sampling, not other weights."""
    likeness = r.comparison.sampling_likeness
    if likeness is not None and likeness >= SAMPLING_LIKENESS:
        add(
            "sampling_params",
            0.85,
            r,
            f"temperature-0 answers pick tokens {likeness:.0%} as far from the reference's "
            "top choices as its own temperature-1 samples do: the temperature is not honoured",
        )
        return
    share = r.comparison.beyond_honest or 0.0
    moved = (
        f"{share:.0%} of greedy answers hold tokens the reference ranks lower than "
        "any trusted provider's answers do"
    )
    if share >= WIDESPREAD_SHARE:
        add("quantization", 0.8, r, f"{moved}: the same weights, more heavily quantized")
        add("model_variant", 0.7, r, f"{moved}: or other weights")
    else:
        add("model_variant", 0.8, r, f"{moved}: part of the traffic is served by other weights")
        add("quantization", 0.5, r, f"{moved}: or a quantization that hurts some prompts only")


def _sampled_likelihood(add: Callable[[str, float, Rejected, str], None], r: Rejected) -> None:
    """Sampled answers more likely under the reference weights than the reference's own
    samples: drawn from a narrower distribution (a lower temperature or top_p than asked).
    Less likely: other weights (or a higher temperature, which the greedy tests tell apart)."""
    what = f"{r.comparison.result.name}, Cliff's delta {r.effect:+.2f}"
    if r.effect > 0:
        add(
            "sampling_params",
            0.7,
            r,
            f"sampled answers are more likely under the reference weights than its own "
            f"samples ({what}): sampled at a lower temperature or top_p than asked",
        )
    else:
        add(
            "model_variant",
            0.6,
            r,
            f"sampled answers are less likely under the reference weights than its own "
            f"samples ({what}): other weights",
        )


def severity_for(verdict: str, diagnoses: list[Diagnosis]) -> str:
    if verdict == "unavailable":
        return "warning"
    if verdict != "deviant":
        return "info"
    return "critical" if any(d.kind in CRITICAL for d in diagnoses) else "warning"


def evidence(
    reference: list[Observation], provider: list[Observation], diagnoses: list[Diagnosis]
) -> list[Evidence]:
    """The probes whose answers differ most from the reference's, side by side: greedy
    probes first (the reference's answer there is the answer), then the rest."""
    ref = {o.key: o for o in reference if o.ok}
    pairs = [(ref[o.key], o) for o in provider if o.ok and o.key in ref and o.sample_index == 0]
    if not pairs:
        return []

    def distance(pair: tuple[Observation, Observation]) -> tuple[int, float]:
        a, b = pair[0].text or "", pair[1].text or ""
        if a == b:
            return (2, 0.0)
        same = common_prefix(a, b)
        greedy = 0 if pair[1].temperature == 0 else 1
        return (greedy, same / max(len(a), len(b), 1))

    note = diagnoses[0].summary if diagnoses else "differs from the reference"
    chosen = sorted((p for p in pairs if (p[0].text or "") != (p[1].text or "")), key=distance)[
        :EVIDENCE_ITEMS
    ]
    return [
        Evidence(
            probe=b.probe_id,
            reference=(a.text or "")[:500],
            provider=(b.text or "")[:500],
            note=f"{note}; prompt tokens {a.prompt_tokens} vs {b.prompt_tokens}, "
            f"finish {a.finish_reason} vs {b.finish_reason}",
        )
        for a, b in chosen
    ]
