"""The dashboard's HTML pages, served for real by uvicorn over loopback from a real database
(SQLite and PostgreSQL) filled through the store, read back as parsed HTML."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urljoin, urlsplit

import httpx
from helpers.db import new_store, set_round_times
from helpers.html import Node, facts, parse

from auditor.alerts.incidents import update_from_findings
from auditor.operations.settings import ServerConfig
from auditor.records import (
    CompletionRequest,
    CompletionResponse,
    Diagnosis,
    ErrorClass,
    Evidence,
    Finding,
    Message,
    ProbeCase,
    RequestParams,
    TestResult,
    Usage,
    utcnow,
)
from auditor.storage.repository import Store
from auditor.storage.tables import RoundRow
from auditor.web.app import create_app
from auditor.web.pages import routes
from auditor.web.server import WebServer

SECRET = "sk-live-SECRET-0123456789"
XSS = "<script>alert(1)</script>"
XSS_TEST = "shift:</script><script>alert(2)</script>"
EXTERNAL = re.compile(r"https?://(?!127\.0\.0\.1[:/])", re.IGNORECASE)


# --- a database with two rounds -------------------------------------------------------------


@dataclass
class Seeded:
    providers: dict[str, int]  # name -> id
    findings: dict[tuple[str, str], int]  # (round, provider) -> finding id


def _case(probe_id: str, text: str) -> ProbeCase:
    return ProbeCase(
        id=probe_id,
        suite="core",
        messages=[Message(role="user", content=text)],
        params=RequestParams(temperature=0, max_tokens=32),
    )


def _answer(
    text: str | None, latency_s: float, error: ErrorClass | None = None
) -> CompletionResponse:
    if error is not None:
        return CompletionResponse(ok=False, status_code=503, error_class=error, latency_s=latency_s)
    return CompletionResponse(
        ok=True,
        status_code=200,
        text=text,
        finish_reason="stop",
        usage=Usage(prompt_tokens=10, completion_tokens=5, total_tokens=15),
        latency_s=latency_s,
    )


def _findings(round_no: int) -> list[Finding]:
    deviant = round_no == 2
    acme_tests = [
        TestResult(name="rate:ref_gap_tail@trusted", statistic=0.62 if deviant else 0.2,
                   p_value=0.001 if deviant else 0.7, effect=0.4, honest_range=(0.1, 0.3), n=40),
        TestResult(name="shift:words", statistic=0.1, p_value=0.6, effect=0.02,
                   honest_range=(-0.2, 0.2), n=40),
        TestResult(name=XSS_TEST, statistic=0.3, p_value=0.2, effect=0.1, n=10),
        TestResult(name="greedy:exact_match", statistic=0.5, p_value=None, effect=None, n=20,
                   status="figure"),
        TestResult(name="reference_likelihood", statistic=None, p_value=None, effect=None, n=0,
                   status="not_available", note="no echo logprobs"),
    ]  # fmt: skip
    acme = Finding(
        model="m",
        provider="acme",
        baseline="reference",
        verdict="deviant" if deviant else "consistent",
        severity="critical" if deviant else "info",
        diagnoses=[
            Diagnosis(kind="quantization", confidence=0.8, summary="weights moved"),
            Diagnosis(kind="model_variant", confidence=0.5, summary="or another fine-tune"),
        ]
        if deviant
        else [],
        tests=acme_tests,
        evidence=[
            Evidence(
                probe="capital",
                reference="The capital of France is Paris.",
                provider="The capital of France is Lyon.",
                note="weights moved; prompt tokens 10 vs 10",
            ),
            Evidence(probe="hello", reference="Hello there", provider=f"{XSS} Hello", note=XSS),
        ]
        if deviant
        else [],
        requests=2,
        errors=0,
        tokens=30,
        cost=0.0012,
    )
    bolt = Finding(
        model="m",
        provider="bolt",
        baseline="reference",
        verdict="consistent",
        severity="info",
        tests=acme_tests[1:2],
        requests=2,
        errors=0,
        tokens=30,
    )
    kite = Finding(
        model="m",
        provider="kite",
        baseline="reference",
        verdict="unavailable" if deviant else "consistent",
        severity="warning" if deviant else "info",
        requests=2,
        errors=2 if deviant else 0,
        tokens=0 if deviant else 30,
        errors_by_class={"server_error": 2} if deviant else {},
    )
    return [acme, bolt, kite]


def seed(store: Store) -> Seeded:
    """Model m: acme (trusted) consistent then deviant, bolt consistent twice, kite consistent
    then unavailable, and the reference; model m2: zeta, never assessed."""
    now = utcnow().replace(microsecond=0)
    base = f"http://admin:{SECRET}@127.0.0.1:8101/v1?api_key={SECRET}"
    providers = {
        "acme": store.upsert_provider(
            "m",
            "acme",
            base_url=base,
            model_id="org/m-7b",
            trusted=True,
            config={"headers": {"x-key": SECRET}},
        ),
        "bolt": store.upsert_provider("m", "bolt", base_url="http://127.0.0.1:8102/v1"),
        "kite": store.upsert_provider("m", "kite", base_url="http://127.0.0.1:8103/v1"),
        "reference": store.upsert_provider("m", "reference", kind="reference"),
        "zeta": store.upsert_provider("m2", "zeta", base_url="http://127.0.0.1:8104/v1"),
    }
    cases = [_case("capital", "Capital of France?"), _case("hello", "Say hello")]
    store.upsert_probe_cases(cases)
    found: dict[tuple[str, str], int] = {}
    for round_no, (rid, started) in enumerate(
        [("r1", now - timedelta(hours=26)), ("r2", now - timedelta(hours=3))], start=1
    ):
        store.start_round(RoundRow(id=rid, suite="core", suite_hash="h" * 12, auditor_version="t"))
        for name in ("acme", "bolt", "kite", "reference"):
            for case, text in zip(cases, ("Paris", "Hello"), strict=True):
                error = ErrorClass.SERVER_ERROR if (name, round_no) == ("kite", 2) else None
                answer = _answer(text, 0.1 * round_no, error)
                request = CompletionRequest.from_case(case, 0)
                store.add_sample(rid, providers[name], request, answer, [], None)
        findings = _findings(round_no)
        store.save_findings(rid, findings, "test", {})
        update_from_findings(store, rid, findings, now=started + timedelta(minutes=10))
        store.finish_round(rid, "complete", None)
        set_round_times(store, rid, started, started + timedelta(minutes=10))
        for f in store_findings(store, rid):
            found[(rid, f[1])] = f[0]
    return Seeded(providers=providers, findings=found)


def store_findings(store: Store, round_id: str) -> list[tuple[int, str]]:
    from sqlalchemy import select

    from auditor.storage.tables import FindingRow

    with store.session() as s:
        rows = s.execute(select(FindingRow).where(FindingRow.round_id == round_id)).scalars()
        return [(r.id or 0, r.provider) for r in rows]


@asynccontextmanager
async def serving(store: Store) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(store, routes=routes())
    async with (
        WebServer(app, ServerConfig(port=0)) as server,
        httpx.AsyncClient(base_url=server.url, trust_env=False, timeout=20) as client,
    ):
        yield client


async def get_page(client: httpx.AsyncClient, path: str, status: int = 200) -> Node:
    response = await client.get(path)
    assert response.status_code == status, (path, response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("text/html")
    return parse(response.text)


# --- the tests ------------------------------------------------------------------------------


async def test_overview_shows_each_verdict_in_its_cell(db_url: str) -> None:
    store = new_store(db_url)
    seeded = seed(store)
    async with serving(store) as client:
        doc = await get_page(client, "/")
        verdicts = {
            n["data-testid"]: n["data-verdict"]
            for n in doc.all(lambda n: (n.get("data-testid") or "").startswith("cell-"))
        }
        assert verdicts == {
            "cell-m-acme": "deviant",
            "cell-m-bolt": "consistent",
            "cell-m-kite": "unavailable",
            "cell-m-zeta": "absent",
            "cell-m2-acme": "absent",
            "cell-m2-bolt": "absent",
            "cell-m2-kite": "absent",
            "cell-m2-zeta": "none",
        }, "the reference is no column; zeta serves only m2"
        acme = doc.one("cell-m-acme")
        assert "v-deviant" in acme["class"] and acme["data-diagnosis"] == "quantization"
        assert "deviant" in acme.words() and "quantization" in acme.words()
        assert "trusted" in acme.words() and "since" in acme.words()
        assert "never assessed" in doc.one("cell-m2-zeta").words()

        (provider_link,) = acme.testids("provider-link")
        (finding_link,) = acme.testids("finding-link")
        assert provider_link["href"] == f"/providers/{seeded.providers['acme']}"
        assert finding_link["href"] == f"/findings/{seeded.findings[('r2', 'acme')]}"
        provider = await get_page(client, provider_link["href"])
        assert provider.one("provider-name").words().startswith("acme")
        assert provider.one("current-verdict").tags("span")[0]["data-verdict"] == "deviant"
        finding = await get_page(client, finding_link["href"])
        assert finding.one("verdict").words() == "deviant"

        rows = doc.testids("incident-row")
        opened = {r.tags("td")[1].words(): r for r in rows}
        assert set(opened) == {"acme", "kite"}, "the open incidents: deviant and unavailable"
        acme_incident = opened["acme"].words()
        assert "critical" in acme_incident and "deviant" in acme_incident
        assert re.search(r"since \d{4}-\d\d-\d\d \d\d:\d\d UTC \(2 h ago\)", acme_incident)
        last = doc.one("last-round")
        assert last.tags("a")[0]["href"] == "/rounds/r2" and "core" in last.words()


async def test_finding_page_shows_evidence_side_by_side_with_the_differences_marked(
    db_url: str,
) -> None:
    store = new_store(db_url)
    seeded = seed(store)
    async with serving(store) as client:
        response = await client.get(f"/findings/{seeded.findings[('r2', 'acme')]}")
        doc = parse(response.text)
    assert [d["data-kind"] for d in doc.testids("diagnosis-row")] == [
        "quantization",
        "model_variant",
    ]
    assert "80%" in doc.testids("diagnosis-row")[0].words()

    tests = {r["data-test"]: r for r in doc.testids("test-row")}
    assert tests["rate:ref_gap_tail@trusted"].get("data-outside") == "above"
    assert tests["rate:ref_gap_tail@trusted"].testids("outside-band")
    assert tests["shift:words"].get("data-outside") is None, "inside its honest range"
    assert tests["greedy:exact_match"]["data-status"] == "figure"
    assert "no echo logprobs" in tests["reference_likelihood"].words()

    evidence = doc.one("evidence")
    rows = {r["data-probe"]: r for r in evidence.testids("evidence-row")}
    assert list(rows) == ["capital", "hello"]
    reference, provider = (
        rows["capital"].one("evidence-reference"),
        rows["capital"].one("evidence-provider"),
    )
    assert reference.text == "The capital of France is Paris."
    assert provider.text == "The capital of France is Lyon."
    assert [n.text for n in reference.all(lambda n: n.get("class") == "diff-del")] == ["Paris"]
    assert [n.text for n in provider.all(lambda n: n.get("class") == "diff-ins")] == ["Lyon"]
    assert [n.tag for n in reference.walk() if n.get("class") == "diff-del"] == ["del"]
    assert not provider.all(lambda n: n.get("class") == "diff-del")

    # The model's output is text, never markup.
    hello = rows["hello"].one("evidence-provider")
    assert hello.text == f"{XSS} Hello"
    assert not hello.tags("script")
    assert [n.text for n in hello.all(lambda n: n.get("class") == "diff-ins")] == [XSS]
    assert rows["hello"].one("evidence-note").text == XSS
    assert XSS not in response.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text
    assert not [s for s in doc.tags("script") if "alert" in s.text]


async def test_provider_page_history_statistics_and_chart_data(db_url: str) -> None:
    store = new_store(db_url)
    seeded = seed(store)
    async with serving(store) as client:
        response = await client.get(f"/providers/{seeded.providers['acme']}")
        doc = parse(response.text)
        kite = await get_page(client, f"/providers/{seeded.providers['kite']}")
    info = facts(doc.one("provider-info"))
    assert info["model id"] == "org/m-7b" and info["trusted"].startswith("yes")
    assert info["base URL"] == "http://127.0.0.1:8101/v1", "no user, password or query"
    strip = doc.one("verdict-strip")
    assert [n["data-verdict"] for n in strip.tags("a")] == ["consistent", "deviant"]
    rounds = doc.testids("provider-round-row")
    assert [r["data-round"] for r in rounds] == ["r2", "r1"], "newest first"
    assert "30" in rounds[0].words() and "$0.0012" in rounds[0].words()

    stats = {r["data-test"]: r for r in doc.testids("statistic-row")}
    assert next(iter(stats)) == "rate:ref_gap_tail@trusted", "outside its band: first"
    assert stats["rate:ref_gap_tail@trusted"].testids("outside-band")
    assert "0.1 … 0.3" in stats["rate:ref_gap_tail@trusted"].words()
    assert "reference_likelihood" not in stats, "not available: nothing to show"

    # The chart data: a JSON island, safe inside its <script> (no way out of the element).
    (island,) = [s for s in doc.tags("script") if s.get("id") == "chart-data"]
    assert island["type"] == "application/json"
    assert "</script>" not in island.text and "<script>" not in island.text
    charts = {c["title"]: c for c in json.loads(island.text)["charts"]}
    assert {"Latency, mean per round", "Error rate per round", "Tokens spent per round"} <= set(
        charts
    )
    gap = charts["rate:ref_gap_tail@trusted"]
    assert gap["series"][0]["values"] == [0.2, 0.62]
    assert gap["band"] == {"high": [0.3, 0.3], "low": [0.1, 0.1]}
    assert len(gap["x"]) == 2 and gap["x"][0] < gap["x"][1]
    assert charts[XSS_TEST]["series"][0]["values"] == [0.3, 0.3]
    assert "band" not in charts[XSS_TEST], "no honest range: no band"
    latency = charts["Latency, mean per round"]["series"][0]["values"]
    assert [round(v) for v in latency] == [100, 200]
    for chart in charts.values():  # every chart has its place in the page
        assert doc.all(lambda n, c=chart: n.get("data-chart") == c["id"])
    assert [s["src"].split("?")[0] for s in doc.tags("script") if s.get("src")] == [
        "/static/vendor/uPlot.iife.min.js",
        "/static/charts.js",
    ]

    error_rate = json.loads(
        next(s for s in kite.tags("script") if s.get("id") == "chart-data").text
    )["charts"][1]
    assert error_rate["series"][0]["values"] == [0.0, 1.0]
    assert "100.0%" in kite.testids("provider-round-row")[0].words()
    assert [r["data-state"] for r in kite.testids("incident-row")] == ["open"]


async def test_round_pages_and_the_rounds_list(db_url: str) -> None:
    store = new_store(db_url)
    seeded = seed(store)
    async with serving(store) as client:
        doc = await get_page(client, "/rounds")
        assert [r["data-round"] for r in doc.testids("round-row")] == ["r2", "r1"]
        pills = {p["data-verdict"]: p.words() for p in doc.testids("round-row")[0].tags("span")}
        assert list(pills.items()) == [
            ("deviant", "1 deviant"),
            ("unavailable", "1 unavailable"),
            ("consistent", "1 consistent"),
        ], "the worst first"

        first = await get_page(client, "/rounds?limit=1")
        assert [r["data-round"] for r in first.testids("round-row")] == ["r2"]
        older = first.one("next-page")["href"]
        second = await get_page(client, older)
        assert [r["data-round"] for r in second.testids("round-row")] == ["r1"]
        assert not second.testids("next-page") and second.testids("first-page")

        detail = await get_page(client, "/rounds/r2")
        assert detail.one("round-id").text == "r2"
        assert "complete" in detail.one("round-status").words()
        assert facts(detail.one("round-info"))["suite hash"] == "hhhhhhhhhhhh"
        rows = {r["data-provider"]: r for r in detail.testids("finding-row")}
        assert {p: r["data-verdict"] for p, r in rows.items()} == {
            "acme": "deviant",
            "bolt": "consistent",
            "kite": "unavailable",
        }
        link = rows["acme"].one("finding-link")["href"]
        assert link == f"/findings/{seeded.findings[('r2', 'acme')]}"
        assert rows["acme"].one("provider-link")["href"] == f"/providers/{seeded.providers['acme']}"
        totals = {r["data-provider"]: r.words() for r in detail.testids("totals-row")}
        assert set(totals) == {"acme", "bolt", "kite", "reference"}
        assert "server_error 2" in totals["kite"] and "100.0%" in totals["kite"]


async def test_unknown_ids_are_404_and_bad_parameters_400(db_url: str) -> None:
    store = new_store(db_url)
    seed(store)
    async with serving(store) as client:
        for path in (
            "/providers/999999",
            "/providers/99999999999999999999999999",
            "/providers/abc",
            "/findings/424242",
            "/findings/1/evidence",
            "/rounds/nope",
            "/rounds/%00",
            "/rounds/" + "x" * 300,
        ):
            doc = await get_page(client, path, 404)
            assert doc.one("error")["data-status"] == "404", path
        for path in (
            "/rounds?cursor=garbage",
            "/rounds?cursor=" + "A" * 500,
            "/rounds?limit=0",
            "/rounds?limit=abc",
            "/rounds?limit=99999999999999999999",
            "/providers/1?limit=-1",
        ):
            doc = await get_page(client, path, 400)
            assert doc.one("error")["data-status"] == "400", path


async def test_an_empty_database_renders(sqlite_url: str) -> None:
    async with serving(new_store(sqlite_url)) as client:
        doc = await get_page(client, "/")
        assert doc.testids("grid-empty") and doc.testids("incidents-empty")
        assert not (await get_page(client, "/rounds")).testids("round-row")


async def test_static_files_are_served_and_nothing_comes_from_elsewhere(db_url: str) -> None:
    store = new_store(db_url)
    seed(store)
    async with serving(store) as client:
        uplot = await client.get("/static/vendor/uPlot.iife.min.js")
        assert uplot.status_code == 200 and "javascript" in uplot.headers["content-type"]
        assert "uPlot" in uplot.text[:200]
        css = await client.get("/static/app.css")
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
        uplot_css = await client.get("/static/vendor/uPlot.min.css")
        assert uplot_css.status_code == 200
        for sheet in (css.text, uplot_css.text):
            assert not EXTERNAL.search(sheet) and "@import" not in sheet

        # Every page reachable from the overview: no link, script, style or image from
        # another host, every asset served here, no secret anywhere.
        seen: set[str] = set()
        queue = ["/"]
        assets: set[str] = set()
        while queue:
            path = queue.pop()
            if path in seen:
                continue
            seen.add(path)
            response = await client.get(path)
            assert response.status_code == 200, path
            assert not EXTERNAL.search(response.text), (path, EXTERNAL.search(response.text))
            assert SECRET not in response.text and "x-key" not in response.text, path
            csp = response.headers["content-security-policy"]
            assert "default-src 'none'" in csp and "script-src 'self'" in csp
            for node in parse(response.text).walk():
                for attr in ("href", "src", "action", "srcset", "poster", "data"):
                    url = node.get(attr)
                    if url is None:
                        continue
                    target = urlsplit(urljoin(str(client.base_url) + path, url))
                    if target.scheme == "data":  # inline (the empty favicon): no request
                        continue
                    assert target.hostname == "127.0.0.1", (path, node.tag, url)
                    if target.path.startswith("/static/"):
                        assets.add(target.path)
                    elif node.tag == "a" and not target.path.startswith("/api/"):
                        queue.append(target.path + (f"?{target.query}" if target.query else ""))
        assert {"/", "/rounds", "/rounds/r1", "/rounds/r2"} <= seen
        assert sum(p.startswith("/findings/") for p in seen) >= 5
        assert sum(p.startswith("/providers/") for p in seen) == 4, "acme bolt kite zeta"
        assert {"/static/app.css", "/static/charts.js", "/static/vendor/uPlot.iife.min.js"} <= (
            assets
        )
        for asset in assets:
            assert (await client.get(asset)).status_code == 200, asset


async def test_a_database_error_is_a_503_page(sqlite_url: str) -> None:
    store = new_store(sqlite_url)
    seed(store)
    async with serving(store) as client:
        with store.engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE incidents")
        doc = await get_page(client, "/", 503)
        assert doc.one("error")["data-status"] == "503"
        assert (await client.get("/rounds")).status_code == 200
