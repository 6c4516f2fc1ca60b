"""The report contract: complete flag, no NaN, markdown evidence."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from helpers.records import finding

from auditor.records import Capability, Evidence, TestResult, UpstreamShare
from auditor.report.render import (
    Report,
    RoundInfo,
    round_info,
    spend_by_verdict,
    to_json,
    to_markdown,
)
from auditor.storage.tables import RoundRow


def info(status: str = "complete", stop_reason: str | None = None) -> RoundInfo:
    row = RoundRow(
        id="r",
        suite="core",
        suite_hash="h",
        auditor_version="t",
        status=status,
        stop_reason=stop_reason,
        started_at=datetime(2026, 1, 1, 12, 0),
    )
    return round_info(row)


def test_complete_means_every_planned_request_was_sent() -> None:
    assert info().complete is True
    assert info(stop_reason="budget: max_tokens").complete is False
    assert info("interrupted", "process died").complete is False
    assert info("running").complete is False


def test_naive_sqlite_times_are_reported_as_utc() -> None:
    assert info().started_at.tzinfo == UTC
    assert info().model_dump(mode="json")["started_at"].endswith("Z")


def test_json_has_null_never_nan() -> None:
    t = TestResult(name="mmd", statistic=float("nan"), p_value=float("inf"), effect=0.5, n=3)
    report = Report(version="x", round=info(), findings=[finding(tests=[t])])
    text = to_json(report)
    data = json.loads(text)
    assert data["findings"][0]["tests"][0]["statistic"] is None
    assert data["findings"][0]["tests"][0]["p_value"] is None
    assert "NaN" not in text and "Infinity" not in text


def test_markdown_shows_evidence_side_by_side() -> None:
    ev = Evidence(
        probe="capital", reference="Paris.", provider="Great question!! 🎉 |Paris|", note="tone"
    )
    md = to_markdown(Report(version="x", round=info(), findings=[finding(evidence=[ev])]))
    assert "| reference | provider |" in md
    assert "| Paris. | Great question!! 🎉 \\|Paris\\| |" in md
    assert "| m | acme | deviant | critical |" in md


def test_markdown_shows_what_moved_beside_the_honest_band() -> None:
    moved = TestResult(
        name="rate:ref_gap_tail@trusted",
        statistic=0.6,
        p_value=1e-6,
        effect=0.5,
        n=60,
        honest_range=(0.0, 0.1),
    )
    still = TestResult(name="shift:words", statistic=300.0, p_value=0.4, effect=0.0, n=60)
    figure = TestResult(
        name="greedy:exact_match",
        statistic=0.1,
        p_value=None,
        effect=-0.9,
        n=20,
        honest_range=(0.7, 0.9),
        status="figure",
    )
    deviant = finding(tests=[still, moved, figure])
    honest = finding(provider="bolt", verdict="consistent", severity="info", tests=[moved])
    md = to_markdown(Report(version="x", round=info(), findings=[deviant, honest]))
    assert "## m / acme: what moved" in md and "## m / bolt: what moved" not in md
    assert "| rate:ref_gap_tail@trusted | 0.6 | 0..0.1 | 1e-06 |" in md
    assert "| greedy:exact_match | 0.1 | 0.7..0.9 | - |" in md
    assert "shift:words" not in md  # did not move


def test_a_ladder_break_reads_as_a_length_in_the_moved_table() -> None:
    breaks = TestResult(name="ladder:breaks", statistic=1256.0, p_value=0.001, effect=1.0, n=6)
    tiny = TestResult(name="rate:refusal", statistic=0.00012, p_value=0.002, effect=0.1, n=60)
    md = to_markdown(Report(version="x", round=info(), findings=[finding(tests=[breaks, tiny])]))
    assert "| ladder:breaks | 1,256 | - | 0.001 |" in md
    assert "| rate:refusal | 0.00012 | - | 0.002 |" in md


def test_spend_is_summed_per_verdict() -> None:
    findings = [
        finding(provider="a", requests=25, tokens=900),
        finding(provider="b", requests=31, tokens=1100),
        finding(provider="c", verdict="consistent", severity="info", requests=25, tokens=800),
    ]
    spend = spend_by_verdict(findings)
    assert spend["deviant"].model_dump() == {"providers": 2, "requests": 56, "tokens": 2000}
    assert spend["consistent"].model_dump() == {"providers": 1, "requests": 25, "tokens": 800}
    report = Report(version="t", round=info(), findings=findings, spend_by_verdict=spend)
    assert "Spent: consistent 1 provider, 25 requests, 800 tokens; deviant 2 providers" in (
        to_markdown(report)
    )
    assert json.loads(to_json(report))["spend_by_verdict"]["deviant"]["requests"] == 56


def test_a_router_finding_is_broken_down_by_upstream() -> None:
    shares = [
        UpstreamShare(upstream="Primary", answers=14),
        UpstreamShare(upstream="Fallback-Host", answers=6, errors=1, off_pin=6),
    ]
    report = Report(version="x", round=info(), findings=[finding(upstreams=shares), finding()])
    md = to_markdown(report)
    assert "## Upstreams behind routers" in md
    assert (
        "- acme upstreams: Primary 14 answers; Fallback-Host 6 answers (6 off the pinned "
        "upstream), 1 error"
    ) in md
    assert md.count("upstreams:") == 1  # the provider that is no router has no line
    assert json.loads(to_json(report))["findings"][0]["upstreams"][1]["off_pin"] == 6


def test_the_capability_table_is_in_the_reports() -> None:
    table = [
        Capability(parameter="seed", status="ignored", judged="own_behaviour", answers=3,
                   note="3 of 3 seeded requests repeated show it ignored"),
        Capability(parameter="stop", status="honoured", judged="against_reference",
                   reference="honoured", answers=3, honoured=3),
    ]  # fmt: skip
    report = Report(version="x", round=info(), findings=[finding(capabilities=table)])
    md = to_markdown(report)
    assert "## Request parameters" in md
    assert (
        "- acme parameters: seed ignored (3 of 3 seeded requests repeated show it ignored); "
        "stop honoured"
    ) in md
    assert json.loads(to_json(report))["findings"][0]["capabilities"][0]["status"] == "ignored"
