"""A provider's effective context window, from a recorded context ladder round (a real echo
fleet member refusing prompts above a limit drawn for it, and honest members) through the
judging layer into the results database, the report, the JSON API and the provider page's
ladder chart. The expected windows follow from the planted limit alone: the longest rung
that fits under it, and the top rung for an honest member."""

from __future__ import annotations

import httpx
import pytest
from helpers.db import new_store
from helpers.html import parse
from helpers.recorded import FIXTURES, MODEL, RecordedRound, load_round

from auditor.judging.findings import ProviderRecord, assess
from auditor.judging.verdict import VerdictPolicy
from auditor.operations.settings import ServerConfig
from auditor.records import ContextWindow, Finding, LadderRung
from auditor.report.render import build_report, to_markdown
from auditor.storage.repository import Store
from auditor.storage.tables import RoundRow
from auditor.web.dashboard import create_dashboard
from auditor.web.ladder_chart import ladder_chart
from auditor.web.server import WebServer

DECLARED = 8192  # the window the ladder was built for (probes/ladder.yaml's model profile)


def rung(
    length: int, status: str, provider: tuple[int, int], reason: str | None = None
) -> LadderRung:
    return LadderRung(
        length=length,
        status=status,  # type: ignore[arg-type]
        reason=reason,  # type: ignore[arg-type]
        provider_passed=provider[0],
        provider_tried=provider[1],
        reference_passed=12,
        reference_tried=12,
    )


def test_chart_bars_are_pass_rates_and_the_line_ends_the_window() -> None:
    window = ContextWindow(
        declared=DECLARED,
        effective=992,
        lower_bound=496,
        breaks_at=1488,
        reason="pass_rate",
        summary="s",
        rungs=[
            rung(496, "match", (12, 12)),
            rung(992, "match", (9, 12)),
            rung(1488, "fail", (3, 12), "pass_rate"),
            rung(1984, "unknown", (0, 0)),
        ],
    )
    chart = ladder_chart(window)
    assert chart is not None and len(chart.slots) == 4
    span = chart.plot_bottom - chart.plot_top
    heights = [[b.height for b in s.bars] for s in chart.slots]
    assert heights == [
        [span, span],
        [span, pytest.approx(span * 0.75, abs=0.1)],
        [span, pytest.approx(span * 0.25, abs=0.1)],
        [span, 0.0],
    ]
    for s in chart.slots:  # reference left of provider, both inside the slot, on the axis
        ref, prov = s.bars
        assert ref.x + ref.width <= prov.x and ref.x < s.center < prov.x + prov.width
        assert all(b.y + b.height == pytest.approx(chart.plot_bottom) for b in s.bars)
    # the line at the right edge of the 992 slot: between its center and the next one's
    assert chart.slots[1].center < (chart.window_x or 0) < chart.slots[2].center
    assert "no scored answer" in chart.slots[3].bars[1].label
    below = window.model_copy(update={"effective": None})
    assert ladder_chart(below).window_x is None  # type: ignore[union-attr]
    assert ladder_chart(window.model_copy(update={"rungs": []})) is None


def judge(recorded: RecordedRound, name: str) -> Finding:
    e = recorded.endpoints[name]
    record = ProviderRecord(MODEL, name, e.requests or 0, e.errors or 0, 0)
    return assess(
        record, "reference", recorded.reference, e.observations, [],
        VerdictPolicy(looks=recorded.looks), {}, seed=f"ladder/{name}", context_window=DECLARED,
    )  # fmt: skip


def stored_round(store: Store, recorded: RecordedRound) -> tuple[dict[str, int], list[Finding]]:
    ids = {e.name: store.upsert_provider(MODEL, e.name) for e in recorded.providers()}
    store.start_round(RoundRow(id="lad", suite="ladder", suite_hash="h" * 12, auditor_version="t"))
    findings = [judge(recorded, e.name) for e in recorded.providers()]
    store.save_findings("lad", findings, "test", {})
    store.finish_round("lad", "complete", None)
    return ids, findings


async def test_effective_window_is_stored_reported_served_and_charted(db_url: str) -> None:
    recorded = load_round(FIXTURES / "ladder.json.gz")
    limited = next(e for e in recorded.providers() if e.fault == "context_limit")
    honest = next(e for e in recorded.providers() if e.fault == "honest")
    store = new_store(db_url)
    ids, findings = stored_round(store, recorded)
    by_name = {f.provider: f for f in findings}
    lengths = [r.length for r in by_name[honest.name].context_window.rungs]  # type: ignore[union-attr]
    assert lengths == sorted(lengths) and len(lengths) == 6
    limit = int(limited.strength or 0)
    fits = max(n for n in lengths if n <= limit)
    first_over = min(n for n in lengths if n > limit)

    # Stored as judged, read back whole.
    stored = {f.provider: f.context_window for f in store.findings("lad")}
    assert stored == {f.provider: f.context_window for f in findings}
    window = by_name[limited.name].context_window
    assert window is not None
    assert (window.effective, window.breaks_at, window.reason) == (fits, first_over, "refused")
    # The climb stops a provider after two failed rungs in a row: the rungs above go unsent.
    sent = lengths[: min(len(lengths), lengths.index(first_over) + 2)]
    assert [r.length for r in window.rungs] == sent
    assert [r.status for r in window.rungs] == ["match" if n <= limit else "fail" for n in sent]
    assert window.declared == DECLARED and window.requests == limited.requests
    answered = [o for o in limited.observations if o.ok]
    assert window.tokens == sum(o.total_tokens or 0 for o in answered) > 0
    top = by_name[honest.name].context_window
    assert top is not None and (top.effective, top.breaks_at) == (lengths[-1], None)

    # The report says each window and what the ladder cost.
    row = store.get_round("lad")
    assert row is not None
    markdown = to_markdown(build_report(store, row))
    assert f"{limited.name} context window: {fits:,} of {DECLARED:,} tokens" in markdown
    assert f"ladder {limited.requests} requests, {window.tokens:,} tokens" in markdown

    app = create_dashboard(store)
    async with (
        WebServer(app, ServerConfig(port=0)) as server,
        httpx.AsyncClient(base_url=server.url, trust_env=False, timeout=20) as client,
    ):
        history = (await client.get(f"/api/providers/{ids[limited.name]}")).json()
        page = parse((await client.get(f"/providers/{ids[limited.name]}")).text)
        honest_page = parse((await client.get(f"/providers/{ids[honest.name]}")).text)
        detail = (await client.get(f"/api/findings/{history['points'][-1]['finding_id']}")).json()
    served = history["context_window"]
    assert served["round_id"] == "lad" and served["window"]["effective"] == fits
    assert ContextWindow.model_validate(served["window"]) == window
    assert history["points"][-1]["effective_window"] == fits
    assert ContextWindow.model_validate(detail["finding"]["context_window"]) == window

    chart = page.one("ladder-chart")
    assert [g["data-status"] for g in chart.testids("ladder-rung")] == [
        r.status for r in window.rungs
    ]
    assert [int(g["data-length"]) for g in chart.testids("ladder-rung")] == sent
    assert f"{fits:,} tokens" in page.one("effective-window").words()
    rows = page.testids("ladder-rung-row")
    assert [r["data-status"] for r in rows] == [r.status for r in window.rungs]
    assert "refused" in rows[lengths.index(first_over)].words()
    honest_chart = honest_page.one("ladder-chart")
    assert {g["data-status"] for g in honest_chart.testids("ladder-rung")} == {"match"}
    assert honest_chart.testids("window-line"), "the window ends at the top rung"
