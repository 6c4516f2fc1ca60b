"""Observations of a provider and of the reference -> statistical comparisons.

Each comparison is a named test with its statistic, p-value, effect and sample size, plus the
metric and probe scope it looked at (what the diagnosis rules read). All tests are two-sample
or paired tests whose null is "the provider behaves as the reference": exact under an honest
provider, up to the small numeric noise of real serving, which moves none of these
distributions measurably. Pure functions over observations; no I/O.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from auditor.observations import Observation
from auditor.records import TestResult
from auditor.stats import (
    excess_rate_test,
    mean_shift_test,
    mmd_hamming_test,
    proportion_test,
)
from auditor.stats.outcome import TestOutcome

# Scorer metrics compared as rates (0/1 per sample) and as distributions.
RATE_METRICS = (
    "expect_pass", "only_number", "hit_max_tokens", "role_leak", "refusal", "follows_one_number",
    "follows_one_word", "follows_yes_no",
    "follows_json_only", "follows_word_limit", "follows_language", "follows_uppercase",
)  # fmt: skip
SHIFT_METRICS = (
    "words", "completion_tokens", "markdown_density", "exclamation_rate", "emoji_rate",
    "flattery", "self_praise", "questions_back",
)  # fmt: skip
MIN_SAMPLES = 5  # fewer paired or scored samples than this: no test
# Violations: events an honest provider does not produce against the reference's own answer.
VIOLATION_METRICS = ("stopped_short_at_length", "over_max_tokens")
TOLERATED_RATE = 0.01  # honest quirks allowed for: 1 request in 100
PROMPT_TOKEN_TOLERANCE = 2  # a BOS token or two billed differently is not a changed prompt
GAP_TAIL_QUANTILE = 0.8

Scope = Callable[[Observation], bool]
SCOPES: dict[str, Scope] = {
    "all": lambda o: True,
    "long_context": lambda o: "long_context" in o.signals,
    "system_prompt": lambda o: o.has_system_message,
    "short": lambda o: "long_context" not in o.signals and not o.has_system_message,
}


@dataclass(frozen=True)
class Comparison:
    result: TestResult
    metric: str
    scope: str
    direction: float = 0.0  # for prompt accounting: the median difference in tokens
    beyond_honest: float | None = None  # share of values beyond every trusted provider's
    sampling_likeness: float | None = None  # greedy gaps over the reference's sampled gaps


def _result(name: str, outcome: TestOutcome) -> TestResult:
    return TestResult(
        name=name,
        statistic=outcome.statistic,
        p_value=outcome.p_value,
        effect=outcome.effect,
        n=outcome.n,
    )


def _values(obs: Iterable[Observation], metric: str) -> list[float]:
    return [v for o in obs if (v := o.scores.get(metric)) is not None]


def metric_comparisons(
    reference: list[Observation], provider: list[Observation]
) -> list[Comparison]:
    """Rates with Fisher's exact test, distributions with Mann-Whitney, per scorer metric;
    the task pass rate also within the long-context and system-prompt probes."""
    out: list[Comparison] = []
    plan = [(m, "all") for m in RATE_METRICS + SHIFT_METRICS]
    plan += [("expect_pass", "long_context"), ("expect_pass", "system_prompt")]
    for metric, scope in plan:
        keep = SCOPES[scope]
        a = _values((o for o in reference if keep(o)), metric)
        b = _values((o for o in provider if keep(o)), metric)
        if len(a) < MIN_SAMPLES or len(b) < MIN_SAMPLES:
            continue
        if metric in RATE_METRICS:
            outcome = proportion_test(int(sum(a)), len(a), int(sum(b)), len(b))
            name = f"rate:{metric}" + ("" if scope == "all" else f"@{scope}")
        else:
            outcome = mean_shift_test(a, b)
            name = f"shift:{metric}"
        out.append(Comparison(_result(name, outcome), metric, scope))
    return out


def violations(provider: list[Observation]) -> list[Comparison]:
    """Answers cut at `length` below the requested max_tokens, or longer than it: the
    reference never does either, so any excess over a tolerated quirk rate is evidence."""
    out = []
    for metric in VIOLATION_METRICS:
        values = _values(provider, metric)
        if values:
            outcome = excess_rate_test(int(sum(values)), len(values), TOLERATED_RATE)
            out.append(Comparison(_result(f"violations:{metric}", outcome), metric, "all"))
    return out


def prompt_accounting(
    reference: list[Observation], provider: list[Observation]
) -> list[Comparison]:
    """Prompt tokens the provider bills against what the reference tokenizer and chat template
    count for the same request, per probe scope. With the same weights and template the
    counts are equal; requests whose counts differ by more than a token or two are
    violations, tested against the tolerated rate."""
    ref = {o.key: o for o in reference if o.prompt_tokens is not None}
    out = []
    for scope, keep in SCOPES.items():
        diffs = [
            (o.prompt_tokens or 0) - (ref[o.key].prompt_tokens or 0)
            for o in provider
            if keep(o) and o.prompt_tokens is not None and o.key in ref
        ]
        if not diffs:
            continue
        k = sum(abs(d) > PROMPT_TOKEN_TOLERANCE for d in diffs)
        outcome = excess_rate_test(k, len(diffs), TOLERATED_RATE)
        out.append(
            Comparison(
                _result(f"prompt_tokens@{scope}", outcome),
                "prompt_tokens",
                scope,
                direction=float(np.median(diffs)) if k else 0.0,
            )
        )
    return out


def sampled_outputs(
    reference: list[Observation], provider: list[Observation], seed: str
) -> list[Comparison]:
    """MMD with a Hamming kernel (Gao et al. 2024) on the completions of sampled probes
    (temperature > 0), compared prompt by prompt."""

    def sampled(obs: list[Observation]) -> list[Observation]:
        return [o for o in obs if o.ok and o.text is not None and (o.temperature or 0) > 0]

    a, b = sampled(reference), sampled(provider)
    if len(a) < MIN_SAMPLES or len(b) < MIN_SAMPLES:
        return []
    rng = np.random.default_rng(int(hashlib.sha256(seed.encode()).hexdigest()[:8], 16))
    outcome = mmd_hamming_test(
        [o.text or "" for o in a], [o.text or "" for o in b], rng=rng,
        x_groups=[o.probe_hash for o in a], y_groups=[o.probe_hash for o in b],
        n_permutations=999,
    )  # fmt: skip
    return [Comparison(_result("mmd_hamming:sampled", outcome), "text", "sampled")]


def greedy_agreement(reference: list[Observation], provider: list[Observation]) -> list[Comparison]:
    """At temperature 0 the reference is deterministic: the share of the provider's answers
    that equal it exactly, and the share that diverge within their first quarter. Honest
    serving diverges late and rarely. Without a calibrated noise band these are reported
    as figures, not tests (p-value null)."""
    pairs = _greedy_pairs(reference, provider)
    if len(pairs) < MIN_SAMPLES:
        return []
    exact = float(np.mean([a == b for a, b in pairs]))
    early = float(np.mean([_diverges_early(a, b) for a, b in pairs]))
    n = len(pairs)

    def figure(name: str, value: float, effect: float) -> TestResult:
        return TestResult(
            name=name, statistic=value, p_value=None, effect=effect, n=n, status="figure"
        )

    return [
        Comparison(figure("greedy:exact_match", exact, exact - 1), "greedy_exact", "greedy"),
        Comparison(figure("greedy:early_divergence", early, early), "greedy_early", "greedy"),
    ]


def common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _greedy_pairs(reference: list[Observation], obs: list[Observation]) -> list[tuple[str, str]]:
    """(reference answer, answer) for every temperature-0 request both answered."""
    ref = {o.key: o.text or "" for o in reference if o.ok and o.temperature == 0}
    return [(ref[o.key], o.text or "") for o in obs if o.ok and o.key in ref]


def _diverges_early(reference_text: str, text: str) -> bool:
    """Diverges from the reference's answer within its first quarter."""
    return common_prefix(reference_text, text) < 0.25 * max(len(reference_text), 1)


def _greedy_counts(reference: list[Observation], obs: list[Observation]) -> tuple[int, int]:
    """(answers diverging early from the reference's, greedy answers)."""
    pairs = _greedy_pairs(reference, obs)
    return sum(_diverges_early(a, b) for a, b in pairs), len(pairs)


def _varying_repeats(obs: list[Observation]) -> tuple[int, int]:
    """(temperature-0 probes whose repeats diverge early from one another, such probes).
    Numeric noise flips a near-tie now and then, late in an answer; sampling makes repeats
    part ways within their first quarter."""
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for o in obs:
        if o.ok and o.temperature == 0 and o.case.get("samples", 1) > 1:
            groups[(o.endpoint, o.probe_hash)].append(o.text or "")
    varying = sum(any(_diverges_early(g[0], t) for t in g[1:]) for g in groups.values())
    return varying, len(groups)


def against_trusted(
    reference: list[Observation], provider: list[Observation], trusted: list[Observation]
) -> list[Comparison]:
    """Greedy behaviour against providers the user vouches for (`trusted: true`): they show
    how far honest serving strays from the reference (numeric noise), so the provider's
    early divergence is tested against theirs (Fisher), and how often its temperature-0
    repeats differ is reported beside theirs."""
    if not trusted:
        return []
    (kb, nb), (ka, na) = _greedy_counts(reference, provider), _greedy_counts(reference, trusted)
    out = []
    if nb >= MIN_SAMPLES and na >= MIN_SAMPLES:
        outcome = proportion_test(ka, na, kb, nb)
        result = _result("rate:greedy_early_divergence@trusted", outcome).model_copy(
            update={"statistic": kb / nb, "honest_range": (0.0, ka / na)}
        )
        out.append(Comparison(result, "greedy_early", "trusted"))
    (vb, mb), (va, ma) = _varying_repeats(provider), _varying_repeats(trusted)
    if mb and ma:
        figure = TestResult(
            name="greedy:repeats_vary", statistic=vb / mb, p_value=None, effect=vb / mb - va / ma,
            honest_range=(0.0, va / ma), n=mb, status="figure",
        )  # fmt: skip
        out.append(Comparison(figure, "repeats_vary_figure", "trusted"))
    return out


def repeat_variation(reference: list[Observation], provider: list[Observation]) -> list[Comparison]:
    """Temperature-0 probes sent several times: how often the provider's repeats differ from
    one another, against the reference's (which never do)."""
    (ka, na), (kb, nb) = _varying_repeats(reference), _varying_repeats(provider)
    if na < 2 or nb < 2:
        return []
    return [
        Comparison(
            _result("rate:greedy_repeats_vary", proportion_test(ka, na, kb, nb)),
            "repeats_vary",
            "greedy",
        )
    ]


def _scored(obs: Iterable[Observation], greedy: bool) -> list[Observation]:
    return [
        o
        for o in obs
        if o.scores.get("ref_logprob_mean") is not None and (o.temperature == 0) == greedy
    ]


def reference_likelihood(
    reference: list[Observation], provider: list[Observation], trusted: list[Observation]
) -> list[Comparison]:
    """The provider's own answers scored under the reference weights (`auditor.likelihood`).

    Sampled answers (temperature > 0): their mean token log-likelihood against that of the
    reference's own samples of the same probes (Mann-Whitney); honest serving draws from the
    same distribution. Greedy answers: the mean gap between the reference's top choice and
    the token the answer has. Numeric noise only breaks near-ties, so honest gaps are small
    but not zero; the provider's gaps are tested against trusted providers' (the noise band)
    and reported as a figure where no provider is trusted.
    """
    if not any(o.scores.get("ref_logprob_mean") is not None for o in reference):
        note = (
            "the reference did not score continuations in this round"
            if any(o.kind == "reference" for o in reference)
            else "needs a reference engine in the round"
        )
        return [
            Comparison(
                TestResult(
                    name="reference_likelihood", statistic=None, p_value=None, effect=None,
                    n=0, status="not_available", note=note,
                ),
                "ref_likelihood",
                "all",
            )
        ]  # fmt: skip
    out = []
    probes = {o.probe_hash for o in _scored(provider, greedy=False)}
    a = _values(
        (o for o in _scored(reference, greedy=False) if o.probe_hash in probes), "ref_logprob_mean"
    )
    b = _values(_scored(provider, greedy=False), "ref_logprob_mean")
    if len(a) >= MIN_SAMPLES and len(b) >= MIN_SAMPLES:
        outcome = mean_shift_test(a, b)
        out.append(
            Comparison(_result("shift:ref_logprob@sampled", outcome), "ref_logprob", "sampled")
        )
    gaps = _values(_scored(provider, greedy=True), "ref_gap_mean")
    honest = _values(_scored(trusted, greedy=True), "ref_gap_mean")
    sampled_gaps = _values(_scored(reference, greedy=False), "ref_gap_mean")
    likeness = (
        float(np.mean(gaps)) / float(np.mean(sampled_gaps))
        if gaps and sampled_gaps and np.mean(sampled_gaps) > 0
        else None
    )
    if len(gaps) >= MIN_SAMPLES and len(honest) >= MIN_SAMPLES:
        out.append(_gap_tail_test(gaps, honest, likeness))
    elif gaps:
        figure = TestResult(
            name="likelihood:ref_gap", statistic=float(np.mean(gaps)), p_value=None,
            effect=float(np.mean(gaps)), n=len(gaps), status="figure",
        )  # fmt: skip
        out.append(Comparison(figure, "ref_gap_figure", "greedy"))
    return out


def _gap_tail_test(gaps: list[float], honest: list[float], likeness: float | None) -> Comparison:
    """How many of the provider's greedy answers fall in the upper tail (above the pooled
    `GAP_TAIL_QUANTILE`) of the gaps, against trusted providers' (Fisher). The threshold is
    a symmetric function of the pooled values, so under the null the count is exactly
    hypergeometric. A tail test, because other weights on a share of the traffic (or in a
    share of the prompts) move a share of the answers far and leave the rest alone; one-sided,
    because a provider closer to the reference than the trusted ones is no fault.

    `likeness` (kept for the diagnosis): the provider's mean greedy gap over the mean gap of
    the reference's own sampled answers. Greedy decoding on other weights picks the argmax
    of slightly different logits, tokens near the reference's top; sampling picks tokens as
    far from it as the reference's own samples do."""
    threshold = float(np.quantile(np.concatenate([gaps, honest]), GAP_TAIL_QUANTILE))
    k_provider = sum(g > threshold for g in gaps)
    k_honest = sum(g > threshold for g in honest)
    outcome = proportion_test(k_honest, len(honest), k_provider, len(gaps), greater=True)
    result = _result("rate:ref_gap_tail@trusted", outcome).model_copy(
        update={"statistic": k_provider / len(gaps), "honest_range": (0.0, k_honest / len(honest))}
    )
    beyond = sum(g > max(honest) for g in gaps) / len(gaps)
    return Comparison(
        result, "ref_gap", "trusted", beyond_honest=beyond, sampling_likeness=likeness
    )


def compare(
    reference: list[Observation],
    provider: list[Observation],
    seed: str,
    trusted: list[Observation] | None = None,
) -> list[Comparison]:
    return [
        *against_trusted(reference, provider, trusted or []),
        *metric_comparisons(reference, provider),
        *violations(provider),
        *prompt_accounting(reference, provider),
        *sampled_outputs(reference, provider, seed),
        *greedy_agreement(reference, provider),
        *repeat_variation(reference, provider),
        *reference_likelihood(reference, provider, trusted or []),
    ]
