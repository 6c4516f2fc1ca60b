"""A finding broken down by upstream: behind a router, what each upstream host served."""

from __future__ import annotations

from collections import defaultdict

from auditor.comparisons.observation import Observation
from auditor.comparisons.routing import RoutingMetric
from auditor.records import UpstreamShare


def upstream_shares(observations: list[Observation]) -> list[UpstreamShare] | None:
    """Per upstream the router named, its answers, errors and answers off the pin (most
    answers first); None when no answer or error named one."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for o in observations:
        if o.upstream is None:
            continue
        slot = counts[o.upstream]
        slot[0 if o.ok else 1] += 1
        slot[2] += o.scores.get(RoutingMetric.OFF_PIN) == 1
    if not counts:
        return None
    shares = [
        UpstreamShare(upstream=name, answers=a, errors=e, off_pin=off)
        for name, (a, e, off) in counts.items()
    ]
    return sorted(shares, key=lambda s: (-s.answers, -s.errors, s.upstream))
