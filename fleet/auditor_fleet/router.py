"""A fleet member answering as a router (`router`, `router_fallback`), as OpenRouter does.

A router passes each request on to one of several upstream hosts of the model and names the
one that answered in a top-level `provider` of the body and of every stream chunk. A request
may pin the upstream: `provider: {"only": ["X"], "allow_fallbacks": false}` or
`provider: {"order": ["X", ...]}`; the member names the first one pinned, else "Primary".
The fleet has no other hosts: every upstream serves the member's own model, so only the name
changes. `router_fallback` answers a fraction `strength` of the requests from "Fallback-Host"
instead, fallbacks allowed or not: a router that quietly falls back to a host the caller
excluded.
"""

from __future__ import annotations

import random
from typing import Any

from auditor_fleet.spec import FleetMember

PRIMARY = "Primary"
FALLBACK = "Fallback-Host"


def pinned(provider: dict[str, Any] | None) -> str:
    """The upstream a request's `provider` preferences name first ("Primary": none)."""
    for key in ("only", "order"):
        names = (provider or {}).get(key)
        if isinstance(names, list) and names and isinstance(names[0], str):
            return names[0]
    return PRIMARY


class Router:
    """One member's routing: which upstream it names for a request (None: not a router)."""

    def __init__(self, member: FleetMember, seed: int) -> None:
        self.active = member.is_router()
        self.share = member.effective_strength() if member.fault == "router_fallback" else 0.0
        self.rng = random.Random(f"{seed}/{member.name}/router")

    def upstream(self, provider: dict[str, Any] | None) -> str | None:
        if not self.active:
            return None
        if self.share and self.rng.random() < self.share:
            return FALLBACK
        return pinned(provider)
