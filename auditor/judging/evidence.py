"""A deviant finding's evidence: the probes whose answers differ most from the reference's,
side by side (greedy probes first: the reference's answer there is the answer). Where the
context is found cut and the provider refused prompts as too long that the reference
answered, the shortest of them comes first, beside the provider's error; then the answers
the reference got right and the provider wrong (its scorer's `expect_pass`), longest prompts
first, where a cut shows most surely (a context ladder's evidence: the needle it lost)."""

from __future__ import annotations

from auditor.comparisons import common_prefix
from auditor.comparisons.observation import Observation
from auditor.comparisons.refusals import refused_where_answered
from auditor.records import Diagnosis, Evidence

EVIDENCE_ITEMS = 3
SHOWN_CHARS = 500


def pick_evidence(
    reference: list[Observation], provider: list[Observation], diagnoses: list[Diagnosis]
) -> list[Evidence]:
    note = diagnoses[0].summary if diagnoses else "differs from the reference"
    refused = _refusal(reference, provider, note) if _cut(diagnoses) else None
    lead = [refused] if refused is not None else []
    ref = {o.key: o for o in reference if o.ok}
    pairs = [(ref[o.key], o) for o in provider if o.ok and o.key in ref and o.sample_index == 0]
    if not pairs:
        return lead

    def distance(pair: tuple[Observation, Observation]) -> tuple[int, float]:
        a, b = pair[0].text or "", pair[1].text or ""
        same = common_prefix(a, b)
        greedy = 0 if pair[1].temperature == 0 else 1
        return (greedy, same / max(len(a), len(b), 1))

    cut = _cut(diagnoses)

    def order(pair: tuple[Observation, Observation]) -> tuple[int, int, float]:
        """Where the context is cut, answers lost come first (greedy, then the longest
        prompts); the rest by `distance`."""
        if cut and _passed(pair[0]) is True and _passed(pair[1]) is False:
            return (0, pair[1].temperature != 0, -(pair[0].prompt_tokens or 0))
        return (1, *distance(pair))

    differing = [p for p in pairs if (p[0].text or "") != (p[1].text or "")]
    chosen = sorted(differing, key=order)[: EVIDENCE_ITEMS - len(lead)]
    return lead + [
        Evidence(
            probe=b.probe_id,
            reference=(a.text or "")[:SHOWN_CHARS],
            provider=(b.text or "")[:SHOWN_CHARS],
            note=f"{note}; prompt tokens {a.prompt_tokens} vs {b.prompt_tokens}, "
            f"finish {a.finish_reason} vs {b.finish_reason}",
        )
        for a, b in chosen
    ]


def _passed(o: Observation) -> bool | None:
    value = o.scores.get("expect_pass")
    return None if value is None else value >= 1.0


def _cut(diagnoses: list[Diagnosis]) -> bool:
    return any(d.kind == "context_truncation" for d in diagnoses)


def _refusal(
    reference: list[Observation], provider: list[Observation], note: str
) -> Evidence | None:
    """The shortest prompt (as the reference counts it) the provider refused as too long and
    the reference answered: the reference's answer beside the provider's error."""
    refused = refused_where_answered(reference, provider)
    if not refused:
        return None
    answers = {o.probe_hash: o for o in reversed(reference) if o.ok}
    b = min(refused, key=lambda o: answers[o.probe_hash].prompt_tokens or 0)
    a = answers[b.probe_hash]
    return Evidence(
        probe=b.probe_id,
        reference=(a.text or "")[:SHOWN_CHARS],
        provider=(b.error_message or "refused as longer than the context")[:SHOWN_CHARS],
        note=f"{note}; prompt tokens {a.prompt_tokens} (the reference's count), refused as "
        "too long",
    )
