"""A deviant finding's evidence: the probes whose answers differ most from the reference's,
side by side (greedy probes first: the reference's answer there is the answer)."""

from __future__ import annotations

from auditor.comparisons import common_prefix
from auditor.comparisons.observation import Observation
from auditor.records import Diagnosis, Evidence

EVIDENCE_ITEMS = 3
SHOWN_CHARS = 500


def pick_evidence(
    reference: list[Observation], provider: list[Observation], diagnoses: list[Diagnosis]
) -> list[Evidence]:
    ref = {o.key: o for o in reference if o.ok}
    pairs = [(ref[o.key], o) for o in provider if o.ok and o.key in ref and o.sample_index == 0]
    if not pairs:
        return []

    def distance(pair: tuple[Observation, Observation]) -> tuple[int, float]:
        a, b = pair[0].text or "", pair[1].text or ""
        same = common_prefix(a, b)
        greedy = 0 if pair[1].temperature == 0 else 1
        return (greedy, same / max(len(a), len(b), 1))

    note = diagnoses[0].summary if diagnoses else "differs from the reference"
    differing = [p for p in pairs if (p[0].text or "") != (p[1].text or "")]
    chosen = sorted(differing, key=distance)[:EVIDENCE_ITEMS]
    return [
        Evidence(
            probe=b.probe_id,
            reference=(a.text or "")[:SHOWN_CHARS],
            provider=(b.text or "")[:SHOWN_CHARS],
            note=f"{note}; prompt tokens {a.prompt_tokens} vs {b.prompt_tokens}, "
            f"finish {a.finish_reason} vs {b.finish_reason}",
        )
        for a, b in chosen
    ]
