"""Observations built by hand, for comparisons tested without a database."""

from __future__ import annotations

from typing import Any

from auditor.comparisons.observation import Observation


def observation(
    probe: int,
    sample_index: int = 0,
    endpoint: str = "provider",
    temperature: float = 0.0,
    text: str | None = None,
    **fields: Any,
) -> Observation:
    """One answered sample of probe `probe` (a short greedy user prompt unless told)."""
    case = {
        "params": {"temperature": temperature},
        "messages": [{"role": "user", "content": f"question {probe}"}],
        "signals": [],
        "samples": 1,
    }
    case.update(fields.pop("case", {}))
    base: dict[str, Any] = {
        "model": "m",
        "endpoint": endpoint,
        "kind": "reference" if endpoint == "reference" else "provider",
        "trusted": False,
        "probe_id": f"p{probe}",
        "probe_hash": f"h{probe}",
        "sample_index": sample_index,
        "ok": True,
        "text": f"answer {probe}" if text is None else text,
        "finish_reason": "stop",
        "prompt_tokens": 20,
        "completion_tokens": 10,
        "total_tokens": 30,
        "error_class": None,
        "case": case,
    }
    base.update(fields)
    return Observation(**base)
