"""Routers: answers served off the pinned upstream are a violation named `other`, with the
upstreams that served them; a router that keeps the pin, or a provider that is no router,
is left alone; and the finding is broken down by upstream."""

from __future__ import annotations

from helpers.observations import observation

from auditor.comparisons.routing import off_pin
from auditor.judging.diagnose import diagnose
from auditor.judging.upstreams import upstream_shares
from auditor.judging.verdict import rejected


def served(upstreams: list[str | None], pinned: str = "Primary") -> list:
    return [
        observation(
            i,
            upstream=name,
            scores={} if name is None else {"upstream_off_pin": float(name != pinned)},
        )
        for i, name in enumerate(upstreams)
    ]


def test_a_router_falling_back_is_found_and_named() -> None:
    provider = served(["Primary"] * 14 + ["Fallback-Host"] * 6)
    comparisons = off_pin(provider)
    [rejection] = rejected(comparisons)
    [diagnosis] = diagnose([rejection], comparisons)
    assert diagnosis.kind == "other"
    assert "served by Fallback-Host (6 of 20)" in diagnosis.summary


def test_a_router_keeping_its_pin_and_a_provider_that_is_no_router_pass() -> None:
    assert rejected(off_pin(served(["Primary"] * 20))) == []
    assert off_pin(served([None] * 20)) == []


def test_the_finding_is_broken_down_by_upstream() -> None:
    provider = served(["Primary"] * 5 + ["Fallback-Host"] * 2 + [None])
    provider.append(observation(99, upstream="Fallback-Host", ok=False))
    shares = upstream_shares(provider)
    assert shares is not None
    assert [(s.upstream, s.answers, s.errors, s.off_pin) for s in shares] == [
        ("Primary", 5, 0, 0),
        ("Fallback-Host", 2, 1, 2),
    ]
    assert upstream_shares(served([None] * 3)) is None
