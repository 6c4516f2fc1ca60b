"""Records as the judging produces them, built by hand."""

from __future__ import annotations

from typing import Any

from auditor.records import Finding


def finding(**fields: Any) -> Finding:
    """A finding for provider acme of model m: deviant and critical against the reference,
    on 10 requests (1 error, 100 tokens), unless `fields` say otherwise."""
    base: dict[str, Any] = {
        "model": "m",
        "provider": "acme",
        "baseline": "reference",
        "verdict": "deviant",
        "severity": "critical",
        "requests": 10,
        "errors": 1,
        "tokens": 100,
    }
    return Finding(**{**base, **fields})
