"""Findings of a round -> the report contract (JSON), a terminal table or markdown."""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from auditor import __version__
from auditor.records import Finding, TestResult, as_utc
from auditor.storage.repository import Store
from auditor.storage.tables import RoundRow


class RoundInfo(BaseModel):
    id: str
    suite: str
    suite_hash: str
    started_at: datetime
    finished_at: datetime | None
    status: Literal["running", "interrupted", "complete"]
    complete: bool
    stop_reason: str | None
    auditor_version: str
    reference_digest: str | None
    planned_requests: int


class Spend(BaseModel):
    """What the round spent on the providers that got one verdict (requests and tokens per
    verdict: with sequential testing, settled providers stop costing)."""

    providers: int = 0
    requests: int = 0
    tokens: int = 0


class Report(BaseModel):
    version: str
    round: RoundInfo
    findings: list[Finding]
    spend_by_verdict: dict[str, Spend] = {}


def spend_by_verdict(findings: list[Finding]) -> dict[str, Spend]:
    spend: dict[str, Spend] = {}
    for f in findings:
        s = spend.setdefault(f.verdict, Spend())
        s.providers, s.requests, s.tokens = (
            s.providers + 1,
            s.requests + f.requests,
            s.tokens + f.tokens,
        )
    return spend


def round_info(row: RoundRow) -> RoundInfo:
    return RoundInfo(
        id=row.id,
        suite=row.suite,
        suite_hash=row.suite_hash,
        started_at=as_utc(row.started_at),
        finished_at=as_utc(row.finished_at) if row.finished_at else None,
        status=row.status,
        # Complete means every planned request was sent and answered or recorded as an error:
        # a round stopped by its budget or a signal is not.
        complete=row.status == "complete" and row.stop_reason is None,
        stop_reason=row.stop_reason,
        auditor_version=row.auditor_version,
        reference_digest=row.reference_digest,
        planned_requests=row.planned_requests,
    )


def build_report(store: Store, row: RoundRow) -> Report:
    findings = store.findings(row.id)
    return Report(
        version=__version__,
        round=round_info(row),
        findings=findings,
        spend_by_verdict=spend_by_verdict(findings),
    )


def _no_nan(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    return value


def to_json(report: Report) -> str:
    """One JSON object; NaN and infinities become null, as the contract requires."""
    return json.dumps(_no_nan(report.model_dump(mode="json")), indent=2, allow_nan=False)


def _diagnosis_text(f: Finding) -> str:
    return "; ".join(f"{d.kind} ({d.confidence:.2f})" for d in f.diagnoses) or "-"


def _errors_text(f: Finding) -> str:
    if not f.errors:
        return "0"
    detail = ", ".join(f"{k} {v}" for k, v in sorted(f.errors_by_class.items()))
    return f"{f.errors} ({detail})"


def _cost_text(f: Finding) -> str:
    return "-" if f.cost is None else f"${f.cost:.4f}"


COLUMNS = (
    "model",
    "provider",
    "verdict",
    "severity",
    "diagnoses",
    "requests",
    "errors",
    "tokens",
    "cost",
)


MOVED_P = 0.05
MOVED_SHOWN = 5


def _rows(report: Report) -> list[list[str]]:
    return [
        [
            f.model,
            f.provider,
            f.verdict,
            f.severity,
            _diagnosis_text(f),
            str(f.requests),
            _errors_text(f),
            str(f.tokens),
            _cost_text(f),
        ]
        for f in report.findings
    ]


def _header(report: Report) -> str:
    r = report.round
    state = (
        "complete"
        if r.complete
        else f"{r.status}, incomplete" + (f": {r.stop_reason}" if r.stop_reason else "")
    )
    return f"round {r.id}  suite {r.suite}  started {r.started_at:%Y-%m-%d %H:%M:%S}  ({state})"


def print_table(report: Report, console: Console) -> None:
    table = Table(title=_header(report), title_justify="left")
    for col in COLUMNS:
        table.add_column(col, justify="right" if col in ("requests", "tokens", "cost") else "left")
    colors = {
        "consistent": "green",
        "deviant": "red",
        "unavailable": "yellow",
        "inconclusive": "cyan",
    }
    for f, row in zip(report.findings, _rows(report), strict=True):
        row[2] = f"[{colors[f.verdict]}]{row[2]}[/]"
        table.add_row(*row)
    console.print(table)
    if report.spend_by_verdict:
        console.print("spent: " + _spend_text(report), highlight=False)
    for line in _window_lines(report) + _upstream_lines(report) + _capability_lines(report):
        console.print(line, highlight=False, markup=False)
    _print_evidence(report, console)


def _window_lines(report: Report) -> list[str]:
    """Each provider's effective context window, where the round ran a ladder: "p03: 1,488
    of 8,192 tokens (confirmed to 992); ladder 72 requests, 103,115 tokens. <summary>"."""
    lines = []
    for f in report.findings:
        if (w := f.context_window) is None:
            continue
        effective = "below the ladder" if w.effective is None else f"{w.effective:,}"
        declared = f" of {w.declared:,}" if w.declared else ""
        bound = f" (confirmed to {w.lower_bound:,})" if w.lower_bound else ""
        lines.append(
            f"{f.provider} context window: {effective}{declared} tokens{bound}; ladder "
            f"{w.requests} requests, {w.tokens:,} tokens. {w.summary[0].upper()}{w.summary[1:]}"
        )
    return lines


def _upstream_lines(report: Report) -> list[str]:
    """Behind a router, what each upstream served: "router upstreams: Primary 14 answers;
    Fallback-Host 6 answers (6 off the pinned upstream), 1 error"."""
    lines = []
    for f in report.findings:
        if not f.upstreams:
            continue
        parts = []
        for u in f.upstreams:
            text = f"{u.upstream} {u.answers} answer{'s' * (u.answers != 1)}"
            text += f" ({u.off_pin} off the pinned upstream)" if u.off_pin else ""
            text += f", {u.errors} error{'s' * (u.errors != 1)}" if u.errors else ""
            parts.append(text)
        lines.append(f"{f.provider} upstreams: " + "; ".join(parts))
    return lines


def _capability_lines(report: Report) -> list[str]:
    """Each provider's capability table, where the round probed request parameters:
    "bolt parameters: seed ignored (3 of 3 seeded requests repeated show it ignored); stop
    honoured; n rejected (HTTP 400: ...)"."""
    lines = []
    for f in report.findings:
        if not f.capabilities:
            continue
        parts = [
            f"{c.parameter} {c.status}" + (f" ({c.note})" if c.note else "") for c in f.capabilities
        ]
        lines.append(f"{f.provider} parameters: " + "; ".join(parts))
    return lines


def _spend_text(report: Report) -> str:
    return "; ".join(
        f"{verdict} {s.providers} provider{'s' * (s.providers != 1)}, {s.requests} requests, "
        f"{s.tokens} tokens"
        for verdict, s in sorted(report.spend_by_verdict.items())
    )


def _moved(f: Finding) -> list[TestResult]:
    """A deviant provider's tests that moved (p below 0.05, strongest first) and its figures:
    what to show beside the noise band honest providers have on them."""
    if f.verdict != "deviant":
        return []
    tested = sorted(
        (t for t in f.tests if t.p_value is not None and t.p_value < MOVED_P),
        key=lambda t: t.p_value or 0.0,
    )
    return tested[:MOVED_SHOWN] + [t for t in f.tests if t.status == "figure"]


def _number(value: float | None) -> str:
    """Three significant figures, but a length or count of 1,000 and up in full: a ladder
    that breaks at 1,256 tokens reads so, not as 1.26e+03."""
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def _band(t: TestResult) -> str:
    low, high = t.honest_range
    return "-" if low is None or high is None else f"{_number(low)}..{_number(high)}"


def _print_evidence(report: Report, console: Console) -> None:
    for f in report.findings:
        for t in _moved(f):
            console.print(
                f"[bold]{f.provider}[/] {t.name}: {_number(t.statistic)} "
                f"(honest {_band(t)}), p {_number(t.p_value)}",
                highlight=False,
            )
        for ev in f.evidence:
            console.print(f"[bold]{f.provider}[/] {ev.probe}: {ev.note}")
            console.print(f"  reference: {ev.reference!r}")
            console.print(f"  provider:  {ev.provider!r}")


def to_markdown(report: Report) -> str:
    lines = [
        f"# Audit report\n\n{_header(report)}\n",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in _rows(report)]
    if report.spend_by_verdict:
        lines.append(f"\nSpent: {_spend_text(report)}.")
    if windows := _window_lines(report):
        lines += ["\n## Effective context windows\n", *(f"- {w}" for w in windows)]
    if upstreams := _upstream_lines(report):
        lines += ["\n## Upstreams behind routers\n", *(f"- {u}" for u in upstreams)]
    if capabilities := _capability_lines(report):
        lines += ["\n## Request parameters\n", *(f"- {c}" for c in capabilities)]
    for f in report.findings:
        if moved := _moved(f):
            lines += [
                f"\n## {f.model} / {f.provider}: what moved\n",
                "| test | statistic | honest range | p-value |",
                "|---|---|---|---|",
                *(
                    f"| {t.name} | {_number(t.statistic)} | {_band(t)} | {_number(t.p_value)} |"
                    for t in moved
                ),
            ]
        if f.evidence:
            lines.append(f"\n## {f.model} / {f.provider}: evidence\n")
            for ev in f.evidence:
                lines += [
                    f"**{ev.probe}**: {ev.note}\n",
                    "| reference | provider |",
                    "|---|---|",
                    f"| {_cell(ev.reference)} | {_cell(ev.provider)} |\n",
                ]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")
