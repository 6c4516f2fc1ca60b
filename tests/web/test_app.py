"""The daemon's HTTP app served for real by uvicorn on a free loopback port: health,
readiness and Prometheus metrics, on SQLite and PostgreSQL."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from helpers.db import new_store, set_round_times
from prometheus_client.parser import text_string_to_metric_families
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from auditor.operations.metrics import REGISTRY
from auditor.operations.settings import ServerConfig
from auditor.records import Finding, utcnow
from auditor.storage.db import make_engine
from auditor.storage.repository import Store
from auditor.storage.tables import IncidentRow, RoundRow
from auditor.web.app import create_app
from auditor.web.server import WebServer

UNREACHABLE_PG = "postgresql+psycopg://postgres@127.0.0.1:1/auditor"  # nothing listens on 1


@asynccontextmanager
async def serving(
    store: Store, is_ready: Callable[[], bool] | None = None, **kwargs: object
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(store, is_ready, **kwargs)  # type: ignore[arg-type]
    async with (
        WebServer(app, ServerConfig(port=0)) as server,
        httpx.AsyncClient(base_url=server.url, trust_env=False, timeout=20) as client,
    ):
        yield client


def scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text page, keyed by name and sorted labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_healthz_and_readyz(db_url: str) -> None:
    scheduler_running = True
    async with serving(new_store(db_url), lambda: scheduler_running) as client:
        health = await client.get("/healthz")
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": "ok", "scheduler": "ok"}

        scheduler_running = False
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["reason"] == "scheduler: not running"
        assert (await client.get("/healthz")).status_code == 200, "alive, only not ready"


async def test_an_unreachable_database_is_unready_but_alive() -> None:
    store = Store(make_engine(UNREACHABLE_PG))
    async with serving(store, lambda: True) as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        body = ready.json()
        assert body["status"] == "unavailable" and body["checks"]["scheduler"] == "ok"
        assert body["reason"].startswith("database: OperationalError")
        assert (await client.get("/healthz")).status_code == 200
        # The process's own metrics are still served; the database's say it is down.
        page = await client.get("/metrics")
        assert page.status_code == 200
        samples = scrape(page.text)
        assert samples[("auditor_database_up", ())] == 0
        assert not any(name == "auditor_open_incidents" for name, _ in samples)
        assert "# TYPE auditor_requests_total counter" in page.text


def _finding(provider: str, verdict: str, severity: str) -> Finding:
    return Finding(
        model="m",
        provider=provider,
        baseline="reference",
        verdict=verdict,  # type: ignore[arg-type]
        severity=severity,  # type: ignore[arg-type]
        requests=10,
        errors=0,
        tokens=100,
    )


def _seed(store: Store) -> datetime:
    """Two rounds of `core` (the latest complete one returned) and one interrupted `deep`."""
    now = utcnow().replace(microsecond=0)
    rounds = [
        ("r1", "core", now - timedelta(hours=2), "complete"),
        ("r2", "core", now - timedelta(hours=1), "complete"),
        ("r3", "deep", now - timedelta(minutes=5), "interrupted"),
    ]
    for rid, suite, started, status in rounds:
        store.start_round(RoundRow(id=rid, suite=suite, suite_hash="h", auditor_version="t"))
        store.finish_round(rid, status, None)
        set_round_times(store, rid, started, started + timedelta(minutes=10))
    for name in ("acme", "bolt", "kite"):  # as a round records them before its findings
        store.upsert_provider("m", name)
    # Latest per provider: acme turned deviant, bolt recovered, kite went unavailable.
    store.save_findings(
        "r1",
        [
            _finding("acme", "consistent", "info"),
            _finding("bolt", "deviant", "critical"),
            _finding("kite", "consistent", "info"),
        ],
        "test",
        {},
    )
    store.save_findings(
        "r2",
        [
            _finding("acme", "deviant", "critical"),
            _finding("bolt", "consistent", "info"),
            _finding("kite", "unavailable", "warning"),
        ],
        "test",
        {},
    )
    # Recomputing the old round writes newer rows; they must not count as the latest.
    store.save_findings("r1", [_finding("bolt", "deviant", "critical")], "test", {})
    with store.session() as s:
        for provider, state, severity in (
            ("acme", "open", "critical"),
            ("kite", "open", "warning"),
            ("bolt", "resolved", "critical"),
        ):
            s.add(
                IncidentRow(
                    model="m",
                    provider=provider,
                    state=state,
                    verdict="deviant",
                    severity=severity,
                    summary="s",
                    opened_at=now,
                    updated_at=now,
                )
            )
        s.commit()
    return rounds[1][2] + timedelta(minutes=10)


async def test_metrics_read_the_database_at_scrape_time(db_url: str) -> None:
    store = new_store(db_url)
    async with serving(store, lambda: True) as client:
        empty = scrape((await client.get("/metrics")).text)
        assert empty[("auditor_database_up", ())] == 1
        assert empty[("auditor_open_incidents", (("severity", "critical"),))] == 0

        last_core = _seed(store)
        page = await client.get("/metrics")
    assert page.headers["content-type"].startswith("text/plain")
    samples = scrape(page.text)
    assert samples[("auditor_open_incidents", (("severity", "critical"),))] == 1
    assert samples[("auditor_open_incidents", (("severity", "warning"),))] == 1
    assert samples[("auditor_open_incidents", (("severity", "info"),))] == 0
    assert samples[("auditor_open_findings", (("severity", "critical"),))] == 1  # acme
    assert samples[("auditor_open_findings", (("severity", "warning"),))] == 1  # kite
    last = samples[("auditor_last_successful_round_timestamp_seconds", (("suite", "core"),))]
    assert last == last_core.replace(tzinfo=UTC).timestamp()
    assert not any(
        name == "auditor_last_successful_round_timestamp_seconds" and labels == (("suite", "deep"),)
        for name, labels in samples
    ), "an interrupted round is not a successful one"
    for family in (
        "auditor_requests",
        "auditor_request_latency_seconds",
        "auditor_rate_limiter_wait_seconds",
        "auditor_tokens",
        "auditor_rounds",
        "auditor_webhook_deliveries",
        "auditor_leader",
    ):
        assert f"# HELP {family}" in page.text, family


async def test_openmetrics_is_negotiated(sqlite_url: str) -> None:
    async with serving(new_store(sqlite_url)) as client:
        page = await client.get(
            "/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"}
        )
    assert page.headers["content-type"].startswith("application/openmetrics-text")
    assert page.text.rstrip().endswith("# EOF")
    assert page.text.count("# EOF") == 1


async def test_a_round_counts_requests_latency_tokens_and_limiter_wait(tmp_path: Path) -> None:
    from helpers.rounds import Broken, Scripted, endpoint, make_store, runner

    store = make_store(tmp_path)
    good, broken = Scripted("metrics-good", tokens=10), Broken("metrics-broken")

    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, {"model": "m", **labels}) or 0.0

    outcome = await runner(store, [endpoint(store, good), endpoint(store, broken)]).run()
    assert outcome.stored == 40
    assert value("auditor_requests_total", provider="metrics-good", outcome="ok") == 20
    assert value("auditor_requests_total", provider="metrics-broken", outcome="ok") == 10
    assert (
        value("auditor_requests_total", provider="metrics-broken", outcome="internal_error") == 10
    )
    assert value("auditor_tokens_total", provider="metrics-good") == 200
    assert value("auditor_request_latency_seconds_count", provider="metrics-good") == 20
    assert value("auditor_rate_limiter_wait_seconds_count", provider="metrics-good") == 20

    async with serving(store) as client:
        samples = scrape((await client.get("/metrics")).text)
    key = (("model", "m"), ("outcome", "ok"), ("provider", "metrics-good"))
    assert samples[("auditor_requests_total", key)] == 20


async def test_the_dashboard_can_add_routes(sqlite_url: str) -> None:
    async def hello(_request: Request) -> PlainTextResponse:
        return PlainTextResponse("dashboard")

    store = new_store(sqlite_url)
    async with serving(store, routes=[Route("/", hello)]) as client:
        assert (await client.get("/")).text == "dashboard"
        assert (await client.get("/healthz")).status_code == 200


async def test_server_start_and_shutdown(sqlite_url: str) -> None:
    store = new_store(sqlite_url)
    before = signal.getsignal(signal.SIGTERM)
    server = WebServer(create_app(store), ServerConfig(port=0))
    port = await server.start()
    assert port > 0 and server.port == port and server.running
    assert signal.getsignal(signal.SIGTERM) is before, "signals stay the daemon's"

    taken = WebServer(create_app(store), ServerConfig(port=port))
    with pytest.raises(OSError):
        await taken.start()
    await taken.shutdown()  # never started: nothing to do

    async with httpx.AsyncClient(trust_env=False) as client:
        assert (await client.get(f"{server.url}/healthz")).status_code == 200
        await server.shutdown()
        assert not server.running
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/healthz")
    await server.stop()  # twice is fine (stop is shutdown's alias)
