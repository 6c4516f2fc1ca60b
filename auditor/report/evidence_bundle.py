"""Findings -> an evidence bundle that can be sent to a provider.

One JSON document per round: for each finding (deviant ones by default), its verdict,
diagnoses and tests, and every probe of the round with the reference's answers and the
provider's side by side (their usage, finish reasons and reference-likelihood scores). Only
the reference and that provider appear: a bundle for one provider never carries another's
answers. Everything comes from the database, where payloads were stored already redacted.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from auditor.comparisons.observation import Observation
from auditor.report.render import build_report, round_info
from auditor.storage.observations import load_observations
from auditor.storage.repository import Store
from auditor.storage.tables import RoundRow

BUNDLE_FORMAT = "auditor-evidence/1"


def _answer(o: Observation) -> dict[str, Any]:
    return {
        "sample_index": o.sample_index,
        "ok": o.ok,
        "error_class": o.error_class,
        "text": o.text,
        "finish_reason": o.finish_reason,
        "prompt_tokens": o.prompt_tokens,
        "completion_tokens": o.completion_tokens,
        "scores": {k: v for k, v in o.scores.items() if k.startswith("ref_")},
    }


def evidence_bundle(
    store: Store, row: RoundRow, provider: str | None = None, all_verdicts: bool = False
) -> dict[str, Any]:
    findings = [
        f
        for f in build_report(store, row).findings
        if (provider is None or f.provider == provider) and (all_verdicts or f.verdict == "deviant")
    ]
    by_endpoint: dict[tuple[str, str], dict[str, list[Observation]]] = defaultdict(
        lambda: defaultdict(list)
    )
    cases: dict[str, dict[str, Any]] = {}
    for o in load_observations(store, row.id):
        by_endpoint[(o.model, o.endpoint)][o.probe_hash].append(o)
        cases[o.probe_hash] = {"probe_id": o.probe_id, **o.case}
    items = []
    for f in findings:
        reference = by_endpoint.get((f.model, "reference"), {})
        answers = by_endpoint.get((f.model, f.provider), {})
        probes = [
            {
                **cases[probe_hash],
                "probe_hash": probe_hash,
                "reference": [_answer(o) for o in reference.get(probe_hash, [])],
                "provider": [_answer(o) for o in observations],
            }
            for probe_hash, observations in answers.items()
        ]
        items.append({**f.model_dump(mode="json"), "probes": probes})
    return {
        "format": BUNDLE_FORMAT,
        "round": round_info(row).model_dump(mode="json"),
        "findings": items,
    }
