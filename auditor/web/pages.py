"""The dashboard's HTML pages: overview, rounds, a round, a provider, a finding.

Read-only views over the results database, rendered server-side with Jinja2 (autoescaped:
answers are untrusted model output). The provider page's charts are drawn in the browser by
uPlot, vendored under /static (see static/README.md), from JSON embedded in the page; every
figure a chart shows is also in an HTML table, so the pages work without scripts. Nothing is
fetched from anywhere but this server.

`routes()` gives the page routes and the `/static` mount; handlers read the store as
`request.app.state.store` and run the blocking queries in a worker thread.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import jinja2
import structlog
from sqlalchemy.exc import DBAPIError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from auditor import __version__
from auditor.records import TestResult, as_utc, utcnow
from auditor.storage.repository import Store
from auditor.web import queries
from auditor.web.diff import word_diff
from auditor.web.formatting import (
    _finite,
    fmt_ago,
    fmt_cost,
    fmt_duration,
    fmt_int,
    fmt_iso,
    fmt_ms,
    fmt_num,
    fmt_p,
    fmt_pct,
    fmt_time,
    in_verdict_order,
    outside_band,
    verdict_class,
)
from auditor.web.ladder_chart import ladder_chart
from auditor.web.views import Cell, ProviderHistory, TestPoint

log = structlog.get_logger(__name__)

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
MAX_ID = 2**63 - 1  # row ids beyond this cannot exist (or be bound)
MAX_LIMIT = 500  # the queries cap their lists there too
CHARTED_TESTS = 6  # the provider page charts this many tests, the ones that matter most
_ROUND_ID = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
_SECURITY_HEADERS = {
    # Everything comes from this server; the chart data is JSON, never run as a script.
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}

T = TypeVar("T")
Handler = Callable[[Request], Awaitable[Response]]


class PageError(Exception):
    """Ends a request with an HTML error page."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every template: model outputs are untrusted
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        time=fmt_time,
        iso=fmt_iso,
        ago=fmt_ago,
        duration=fmt_duration,
        int=fmt_int,
        num=fmt_num,
        pct=fmt_pct,
        ms=fmt_ms,
        p=fmt_p,
        cost=fmt_cost,
        vclass=verdict_class,
        verdict_order=in_verdict_order,
    )
    env.globals.update(version=__version__, outside_band=outside_band)
    return env


templates = Jinja2Templates(env=_environment())


def render(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> Response:
    root = request.scope.get("root_path", "").rstrip("/")
    context = {"root": root, "now": utcnow(), "active": "", **context}
    return templates.TemplateResponse(
        request, name, context, status_code=status_code, headers=_SECURITY_HEADERS
    )


def page(handler: Handler) -> Handler:
    """Turn a `PageError` (or a database that does not answer) into an HTML error page."""

    @wraps(handler)
    async def wrapper(request: Request) -> Response:
        try:
            return await handler(request)
        except PageError as exc:
            error = exc
        except DBAPIError as exc:
            log.warning("page.database_error", path=request.url.path, error=_error_name(exc))
            error = PageError(503, "Database unavailable", "The results database did not answer.")
        return render(
            request,
            "error.html",
            {"title": error.title, "detail": error.detail, "status": error.status},
            error.status,
        )

    return wrapper


def _error_name(exc: DBAPIError) -> str:
    """The driver's exception class: its message may quote the query's values."""
    return type(exc.orig or exc).__name__


# --- request parsing -----------------------------------------------------------------------


def _store(request: Request) -> Store:
    store: Store = request.app.state.store  # set by the app factory
    return store


async def _query(request: Request, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await run_in_threadpool(fn, _store(request), *args, **kwargs)


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not re.fullmatch(r"\d{1,9}", raw) or not low <= int(raw) <= high:
        raise PageError(400, "Bad request", f"{name} must be a whole number, {low} to {high}.")
    return int(raw)


def _cursor(request: Request) -> str | None:
    raw = request.query_params.get("cursor")
    if raw is None or raw == "":
        return None
    if len(raw) > 200 or not raw.isprintable():
        raise _bad_cursor()
    return raw


def _id(request: Request, name: str, what: str) -> int:
    value: int = request.path_params[name]
    if value > MAX_ID:
        raise _not_found(what)
    return value


def _bad_cursor() -> PageError:
    return PageError(400, "Bad request", "This cursor is not one this server gave out.")


def _not_found(what: str) -> PageError:
    return PageError(404, "Not found", f"There is no {what} here.")


# --- pages ---------------------------------------------------------------------------------


@page
async def overview_page(request: Request) -> Response:
    data = await _query(request, queries.overview)
    cells: dict[tuple[str, str], Cell] = {(c.model, c.provider): c for c in data.cells}
    return render(
        request,
        "overview.html",
        {
            "active": "overview",
            "data": data,
            "cells": cells,
            "provider_ids": {key: c.provider_id for key, c in cells.items()},
        },
    )


@page
async def rounds_page(request: Request) -> Response:
    limit = _int_param(request, "limit", 50, 1, MAX_LIMIT)
    cursor = _cursor(request)
    try:
        listing = await _query(request, queries.rounds, limit=limit, cursor=cursor)
    except ValueError as exc:  # a cursor the queries cannot read
        raise _bad_cursor() from exc
    return render(
        request,
        "rounds.html",
        {"active": "rounds", "listing": listing, "cursor": cursor, "limit": limit},
    )


@page
async def round_page(request: Request) -> Response:
    round_id: str = request.path_params["round_id"]
    if not _ROUND_ID.fullmatch(round_id):
        raise _not_found("round")
    detail = await _query(request, queries.round_detail, round_id)
    if detail is None:
        raise _not_found("round")
    return render(request, "round.html", {"active": "rounds", "detail": detail})


@page
async def provider_page(request: Request) -> Response:
    provider_id = _id(request, "provider_id", "provider")
    limit = _int_param(request, "limit", 200, 1, MAX_LIMIT)
    history = await _query(request, queries.provider_history, provider_id, limit=limit)
    if history is None:
        raise _not_found("provider")
    tests = ranked_tests(history)
    return render(
        request,
        "provider.html",
        {
            "active": "",
            "history": history,
            "tests": tests,
            "charts": chart_data(history, [name for name, _ in tests[:CHARTED_TESTS]]),
            "latest": history.points[-1] if history.points else None,
            "ladder": ladder_chart(history.context_window.window)
            if history.context_window
            else None,
        },
    )


@page
async def finding_page(request: Request) -> Response:
    finding_id = _id(request, "finding_id", "finding")
    detail = await _query(request, queries.finding, finding_id)
    if detail is None:
        raise _not_found("finding")
    f = detail.finding
    samples = await _query(
        request, queries.evidence_samples, detail.round.id, f.model, f.provider, f.evidence
    )
    evidence = [
        (e, word_diff(e.reference, e.provider), sampled)
        for e, sampled in zip(f.evidence, samples, strict=True)
    ]
    return render(
        request,
        "finding.html",
        {
            "active": "",
            "detail": detail,
            "f": f,
            "tests": f.tests,
            "evidence": evidence,
            "outside": {t.name: _test_outside(t) for t in f.tests},
        },
    )


@page
async def not_found_page(request: Request) -> Response:
    raise _not_found("page")


def _test_outside(test: TestResult) -> str | None:
    low, high = test.honest_range
    return outside_band(test.statistic, low, high)


# --- the provider page's figures -----------------------------------------------------------


def ranked_tests(history: ProviderHistory) -> list[tuple[str, list[TestPoint]]]:
    """The provider's tests, those that matter most first: the latest statistic outside its
    honest band, then by the smallest p-value the test ever had, then by name."""

    def key(item: tuple[str, list[TestPoint]]) -> tuple[int, float, str]:
        name, points = item
        last = points[-1] if points else None
        out = last is not None and outside_band(last.statistic, last.honest_low, last.honest_high)
        ps = [v for p in points if (v := _finite(p.p_value)) is not None]
        return (0 if out else 1, min(ps) if ps else 2.0, name)

    charted = [
        (name, points)
        for name, points in history.tests.items()
        if any(_finite(p.statistic) is not None for p in points)
    ]
    return sorted(charted, key=key)


def _ts(value: datetime) -> float:
    return as_utc(value).timestamp()


def chart_data(history: ProviderHistory, test_names: list[str]) -> dict[str, Any]:
    """What charts.js draws: one entry per chart, x as Unix seconds, gaps as null."""
    points = history.points
    x = [_ts(p.at) for p in points]
    charts: list[dict[str, Any]] = [
        {
            "id": "latency",
            "title": "Latency, mean per round",
            "unit": "ms",
            "x": x,
            "series": [
                {"label": "latency", "values": [_finite(p.latency_ms_mean) for p in points]}
            ],
        },
        {
            "id": "error-rate",
            "title": "Error rate per round",
            "unit": "pct",
            "x": x,
            "series": [{"label": "error rate", "values": [_finite(p.error_rate) for p in points]}],
        },
        {
            "id": "tokens",
            "title": "Tokens spent per round",
            "unit": "int",
            "kind": "bars",
            "x": x,
            "series": [{"label": "tokens", "values": [p.tokens for p in points]}],
        },
    ]
    for i, name in enumerate(test_names):
        tps = history.tests[name]
        chart: dict[str, Any] = {
            "id": f"test-{i}",
            "title": name,
            "unit": "num",
            "x": [_ts(p.at) for p in tps],
            "series": [{"label": "statistic", "values": [_finite(p.statistic) for p in tps]}],
        }
        high = [_finite(p.honest_high) for p in tps]
        low = [_finite(p.honest_low) for p in tps]
        if any(v is not None for v in (*high, *low)):
            chart["band"] = {"high": high, "low": low}
        charts.append(chart)
    return {"charts": charts}


def routes() -> list[BaseRoute]:
    """The pages and their static files (mounted at /static)."""
    return [
        Route("/", overview_page, name="overview"),
        Route("/rounds", rounds_page, name="rounds"),
        Route("/rounds/{round_id}", round_page, name="round"),
        Route("/providers/{provider_id:int}", provider_page, name="provider"),
        Route("/findings/{finding_id:int}", finding_page, name="finding"),
        # ids that are not numbers, and deeper paths: the same HTML 404 as unknown ids
        Route("/rounds/{rest:path}", not_found_page),
        Route("/providers/{rest:path}", not_found_page),
        Route("/findings/{rest:path}", not_found_page),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
