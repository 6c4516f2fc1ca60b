"""The dashboard in headless Chromium (Debian's /usr/bin/chromium driven by Playwright), against
the real uvicorn server serving the database of a real demo round (tests/web/conftest.py).

Every page is loaded with a recorder on the browser context: each request it makes (any host
but 127.0.0.1 is aborted and counted), each response of 400 or more, each console error and
uncaught exception; a test fails on any of them. Screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    Request,
    Response,
    Route,
    sync_playwright,
)

if TYPE_CHECKING:  # tests/web/conftest.py (a plain `import conftest` finds tests/conftest.py)
    from web.conftest import DemoFinding, DemoRound

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
LOOPBACK = "127.0.0.1"

pytestmark = [
    pytest.mark.slow,  # a real demo round (about 100 s), then a browser
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="no /usr/bin/chromium: install Debian's chromium and chromium-driver (.ci/run does)",
    ),
]


def words(text: str) -> str:
    return " ".join(text.split())


def differ(a: str, b: str) -> bool:
    """Whether two answers differ in more than whitespace."""
    return "".join(a.split()) != "".join(b.split())


@dataclass
class Recorder:
    """What the pages of one browser context did on the network and in the console."""

    requests: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)  # blocked: not on 127.0.0.1
    failed: list[str] = field(default_factory=list)  # HTTP >= 400, or no response
    errors: list[str] = field(default_factory=list)  # console errors, uncaught exceptions

    def attach(self, context: BrowserContext, page: Page) -> None:
        context.route("**/*", self._route)
        context.on("request", self._request)
        context.on("response", self._response)
        context.on("requestfailed", lambda r: self.failed.append(f"{r.url}: {r.failure}"))
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))

    def _route(self, route: Route) -> None:
        parts = urlsplit(route.request.url)
        if parts.scheme in ("http", "https", "ws", "wss") and parts.hostname != LOOPBACK:
            self.foreign.append(route.request.url)
            route.abort("blockedbyclient")
        else:
            route.continue_()

    def _request(self, request: Request) -> None:
        self.requests.append(request.url)

    def _response(self, response: Response) -> None:
        if response.status >= 400:
            self.failed.append(f"{response.url}: HTTP {response.status}")

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text} at {message.location}")

    def check(self) -> None:
        hosts = {urlsplit(u).hostname for u in self.requests if urlsplit(u).scheme != "data"}
        assert not self.foreign, f"requests beyond {LOOPBACK}: {self.foreign}"
        assert hosts <= {LOOPBACK}, f"hosts other than {LOOPBACK}: {hosts}"
        assert not self.failed, f"failed requests: {self.failed}"
        assert not self.errors, f"errors in the page: {self.errors}"


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    # Module scope, not session: while it lives, Playwright's sync API keeps an event loop
    # running in this thread, and the async tests of the modules after this one need none.
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )
    yield browser
    browser.close()


@dataclass
class Visit:
    page: Page
    recorder: Recorder
    base: str

    def goto(self, path: str) -> None:
        response = self.page.goto(self.base + path, wait_until="networkidle")
        assert response is not None and response.status == 200, f"GET {path}: {response}"


@pytest.fixture
def visit(browser: Browser, dashboard: str) -> Iterator[Visit]:
    """A fresh browser context and page on the dashboard, recording what it does."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    recorder = Recorder()
    recorder.attach(context, page)
    page.set_default_timeout(15_000)
    try:
        yield Visit(page, recorder, dashboard)
    finally:
        context.close()


def cell_verdicts(page: Page, model: str) -> dict[str, str | None]:
    """Provider name -> `data-verdict` of its cell in the overview grid, for `model`."""
    prefix = f"cell-{model}-"
    out: dict[str, str | None] = {}
    for cell in page.locator(f'[data-testid^="{prefix}"]').all():
        testid = cell.get_attribute("data-testid") or ""
        out[testid.removeprefix(prefix)] = cell.get_attribute("data-verdict")
    return out


def pick_deviant(demo_round: DemoRound) -> DemoFinding:
    """A deviant finding whose evidence has a probe where the two answers differ."""
    for f in sorted(demo_round.findings.values(), key=lambda f: f.provider):
        if f.verdict == "deviant" and any(
            differ(e["reference"], e["provider"]) for e in f.evidence
        ):
            return f
    pytest.fail(f"no deviant finding with differing evidence in {demo_round.verdicts()}")


def test_the_demo_round_has_deviant_and_consistent_providers(demo_round: DemoRound) -> None:
    """The premise of the tests below, read from the database the demo round wrote."""
    verdicts = demo_round.verdicts()
    assert "deviant" in verdicts.values(), verdicts
    assert "consistent" in verdicts.values(), verdicts


def test_the_overview_shows_the_deviant_providers(
    visit: Visit, demo_round: DemoRound, artifacts: Path
) -> None:
    visit.goto("/")
    models = {f.model for f in demo_round.findings.values()}
    shown: dict[str, str | None] = {}
    for model in models:
        shown |= cell_verdicts(visit.page, model)
    expected = demo_round.verdicts()
    assert set(expected) <= set(shown), f"cells {sorted(shown)}, findings {sorted(expected)}"
    assert {p: shown[p] for p in expected} == expected
    deviant = {p for p, v in expected.items() if v == "deviant"}
    assert {p for p, v in shown.items() if v == "deviant"} == deviant
    assert deviant and "consistent" in shown.values()
    # every cell links to its provider's finding in the round
    for f in demo_round.findings.values():
        cell = visit.page.get_by_test_id(f"cell-{f.model}-{f.provider}")
        assert cell.is_visible()
        link = cell.get_by_test_id("finding-link")
        assert link.count() == 1, f"{f.provider}: no finding link in its cell"
        assert (link.get_attribute("href") or "").endswith(f"/findings/{f.id}")
    visit.page.screenshot(path=str(artifacts / "overview.png"), full_page=True)
    visit.recorder.check()


def test_a_click_reaches_the_side_by_side_evidence(
    visit: Visit, demo_round: DemoRound, artifacts: Path
) -> None:
    finding = pick_deviant(demo_round)
    visit.goto("/")
    cell = visit.page.get_by_test_id(f"cell-{finding.model}-{finding.provider}")
    cell.get_by_test_id("finding-link").click()
    visit.page.wait_for_url(re.compile(rf"/findings/{finding.id}$"))
    visit.page.wait_for_load_state("networkidle")

    table = visit.page.get_by_test_id("evidence")
    assert table.is_visible()
    rows = table.get_by_test_id("evidence-row")
    assert rows.count() == len(finding.evidence)
    highlighted = 0
    for i, evidence in enumerate(finding.evidence):
        row = rows.nth(i)
        reference = row.get_by_test_id("evidence-reference")
        provider = row.get_by_test_id("evidence-provider")
        # the answers (a sample's reasoning and upstream, when it has them, come below)
        answers = reference.locator("pre").first, provider.locator("pre").first
        assert words(answers[0].inner_text()) == words(evidence["reference"] or "(empty)")
        assert words(answers[1].inner_text()) == words(evidence["provider"] or "(empty)")
        # side by side: one line, the reference's answer left of the provider's
        ref_box, prov_box = reference.bounding_box(), provider.bounding_box()
        assert ref_box is not None and prov_box is not None
        assert ref_box["x"] + ref_box["width"] <= prov_box["x"] + 1
        assert abs(ref_box["y"] - prov_box["y"]) < 2
        marks = row.locator(".diff-ins, .diff-del")
        # what the provider added is marked on its side, what it lost on the reference's
        assert reference.locator(".diff-ins").count() == 0
        assert provider.locator(".diff-del").count() == 0
        if differ(evidence["reference"], evidence["provider"]):
            assert marks.count() > 0, f"no diff highlight for probe {evidence['probe']}"
            highlighted += 1
        elif evidence["reference"] == evidence["provider"]:
            assert marks.count() == 0, f"identical answers highlighted: {evidence['probe']}"
    assert highlighted > 0
    visit.page.screenshot(path=str(artifacts / "finding.png"), full_page=True)
    visit.recorder.check()


def test_the_provider_page_renders_its_charts_from_loopback_only(
    visit: Visit, demo_round: DemoRound, artifacts: Path
) -> None:
    finding = pick_deviant(demo_round)
    visit.goto(f"/providers/{finding.provider_id}")
    assert visit.page.get_by_test_id("provider-name").inner_text().startswith(finding.provider)
    figures = visit.page.get_by_test_id("charts").locator("figure")
    assert figures.count() >= 1
    for i in range(figures.count()):
        figure = figures.nth(i)
        canvas = figure.locator(".uplot canvas").first
        canvas.wait_for(state="attached")
        box = canvas.bounding_box()
        assert box is not None and box["width"] > 50 and box["height"] > 20, (
            f"chart {figure.get_attribute('data-chart')}: {box}"
        )
    # the chart library came from the dashboard itself, not from a CDN
    assert any("/static/" in u and "uplot" in u.lower() for u in visit.recorder.requests), (
        visit.recorder.requests
    )
    visit.page.screenshot(path=str(artifacts / "provider.png"), full_page=True)
    visit.recorder.check()


def test_the_rounds_list_leads_to_the_round_and_its_verdicts(
    visit: Visit, demo_round: DemoRound, artifacts: Path
) -> None:
    visit.goto("/rounds")
    row = visit.page.locator(f'[data-testid="round-row"][data-round="{demo_round.round_id}"]')
    row.get_by_test_id("round-link").click()
    visit.page.wait_for_url(re.compile(rf"/rounds/{demo_round.round_id}$"))
    visit.page.wait_for_load_state("networkidle")
    assert visit.page.get_by_test_id("round-id").inner_text() == demo_round.round_id
    rows = visit.page.get_by_test_id("finding-row")
    shown = {
        rows.nth(i).get_attribute("data-provider"): rows.nth(i).get_attribute("data-verdict")
        for i in range(rows.count())
    }
    assert shown == demo_round.verdicts()
    visit.page.screenshot(path=str(artifacts / "round.png"), full_page=True)
    visit.recorder.check()
