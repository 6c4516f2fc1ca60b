"""Routers: was the answer served by the upstream the request pinned?

A router (OpenRouter) picks the upstream host of each request; a request may pin it with
`provider: {"only": [...]}`, or `provider: {"order": [...], "allow_fallbacks": false}`
(in the provider's `params`), and the router names the upstream that served it in the
answer's top-level `provider` (`CompletionResponse.upstream`).

- `upstream_off_pin`: 1.0 if the request pinned upstreams and the answer names another, 0.0
  if it names a pinned one; None when nothing was pinned or no upstream was named. Names
  are compared as OpenRouter writes them on each side: the request's slugs
  (`deepinfra/turbo`) by their host part, the answer's display names (`DeepInfra`), both
  without case, spaces or punctuation.
"""

from __future__ import annotations

import re
from typing import Any

from auditor.records import CompletionResponse, ProbeCase, ScoreRecord
from auditor.scorers.base import Scorer, scorers

_NOT_ALNUM = re.compile(r"[^a-z0-9]")


def upstream_key(name: str) -> str:
    """A name as both sides can be compared: the host part of a slug, lower case, letters
    and digits only."""
    return _NOT_ALNUM.sub("", name.split("/", 1)[0].lower())


def pinned_upstreams(body: dict[str, Any]) -> list[str] | None:
    """The upstreams a request body pins (None: it lets the router choose)."""
    routing = body.get("provider")
    if not isinstance(routing, dict):
        return None
    only = routing.get("only")
    if isinstance(only, list) and only:
        return [str(name) for name in only]
    order = routing.get("order")
    if isinstance(order, list) and order and routing.get("allow_fallbacks") is False:
        return [str(name) for name in order]
    return None


@scorers.register("router")
class RouterScorer(Scorer):
    name = "router"

    def score(self, case: ProbeCase, response: CompletionResponse) -> list[ScoreRecord]:
        pinned = pinned_upstreams(response.raw_request)
        if not response.ok or pinned is None or response.upstream is None:
            return []
        off = upstream_key(response.upstream) not in {upstream_key(p) for p in pinned}
        detail = {"upstream": response.upstream, "pinned": pinned}
        return [self._record("upstream_off_pin", float(off), detail)]
