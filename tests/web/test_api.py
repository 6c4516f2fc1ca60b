"""The JSON API mounted at /api in the daemon's app, served for real by uvicorn on loopback,
over databases filled through the real Store (SQLite and PostgreSQL)."""

from __future__ import annotations

import io
import json
import re
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from helpers.cli import run_auditor
from helpers.db import new_store
from helpers.exports import build
from helpers.seeded import (
    HEADER_NAME,
    KEY_ENV,
    ROUND_IDS,
    SECRET_HEADER_VALUE,
    URL_PASSWORD,
    URL_QUERY_KEY,
    VERDICTS,
    Seeded,
    seed,
)
from sqlalchemy import select
from starlette.routing import Mount

from auditor.operations.settings import ServerConfig
from auditor.report.parquet import MEDIA_TYPE, write_round_samples
from auditor.storage.db import make_engine
from auditor.storage.repository import Store
from auditor.storage.tables import FindingRow, ProviderRow
from auditor.web import queries
from auditor.web.api import create_api
from auditor.web.app import create_app
from auditor.web.queries import paging
from auditor.web.server import WebServer


@asynccontextmanager
async def serving(store: Store) -> AsyncIterator[httpx.AsyncClient]:
    """The daemon's app with the API mounted at /api, as the dashboard mounts it."""
    app = create_app(store, routes=[Mount("/api", app=create_api(store))])
    async with (
        WebServer(app, ServerConfig(port=0)) as server,
        httpx.AsyncClient(base_url=server.url, trust_env=False, timeout=30) as client,
    ):
        yield client


def strict_json(text: str) -> Any:
    """JSON as the contract allows it: NaN and Infinity tokens are refused."""

    def refuse(token: str) -> None:
        raise ValueError(f"{token} in JSON")

    return json.loads(text, parse_constant=refuse)


async def get_json(client: httpx.AsyncClient, url: str, **params: Any) -> Any:
    response = await client.get(url, params=params)
    assert response.status_code == 200, (url, response.text)
    assert response.headers["content-type"].startswith("application/json")
    return strict_json(response.text)


async def walk(client: httpx.AsyncClient, url: str, **params: Any) -> list[dict[str, Any]]:
    """Every item of a paginated list, following `next_cursor`."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = await get_json(client, url, **params, **({"cursor": cursor} if cursor else {}))
        assert len(page["items"]) <= params.get("limit", 50)
        items += page["items"]
        if page["next_cursor"] is None:
            return items
        cursor = page["next_cursor"]


@pytest.fixture
def seeded(db_url: str) -> Seeded:
    return seed(db_url)


async def test_the_api_serves_what_the_queries_read(seeded: Seeded) -> None:
    store = seeded.store
    async with serving(store) as client:
        overview = await get_json(client, "/api/overview")
        assert overview == queries.overview(store).model_dump(mode="json")
        cells = {(c["model"], c["provider"]): c for c in overview["cells"]}
        assert cells[("m1", "acme")]["verdict"] == "deviant"
        assert cells[("m1", "acme")]["open_incident"]["opened_round_id"] == "r-d"

        rid = "r-a"
        detail = await get_json(client, f"/api/rounds/{rid}")
        assert detail == queries.round_detail(store, rid).model_dump(mode="json")  # type: ignore[union-attr]
        finding_id = seeded.findings[(rid, "m1", "acme")]
        finding = await get_json(client, f"/api/findings/{finding_id}")
        assert finding["finding"]["verdict"] == VERDICTS[("m1", "acme")][3]
        assert finding["provider_id"] == seeded.providers[("m1", "acme")]

        pid = seeded.providers[("m2", "acme")]
        history = await get_json(client, f"/api/providers/{pid}", limit=3)
        assert [p["round_id"] for p in history["points"]] == ROUND_IDS[-3:]
        assert history == queries.provider_history(store, pid, 3).model_dump(mode="json")  # type: ignore[union-attr]

        listed = await get_json(client, "/api/providers")
        assert {(p["model"], p["name"]) for p in listed} == set(seeded.providers)
        references = await get_json(client, "/api/providers", kind="reference")
        assert {p["name"] for p in references} == {"reference"}

        fact = next(f for f in seeded.samples if f.ok)
        sample = await get_json(client, f"/api/samples/{fact.id}")
        assert sample["request_json"]["model"] == fact.model and sample["ok"] is True

        incidents = await get_json(client, "/api/incidents", state="open")
        assert {(i["model"], i["provider"]) for i in incidents} == {
            ("m1", "acme"),
            ("m2", "acme"),
            ("suite:deep", "auditor"),
        }
        resolved = await get_json(client, "/api/incidents", state="resolved")
        assert resolved and all(i["state"] == "resolved" for i in resolved)
        assert len(await get_json(client, "/api/incidents", limit=1)) == 1


async def test_pagination_over_http_visits_every_row_once(seeded: Seeded) -> None:
    async with serving(seeded.store) as client:
        rounds = await walk(client, "/api/rounds", limit=2)
        assert [r["id"] for r in rounds] == seeded.rounds_newest_first()

        acme = await walk(client, "/api/findings", provider="acme", limit=2)
        expected = sorted(
            (k for k in seeded.findings if k[2] == "acme"),
            key=lambda k: (seeded.starts[k[0]], seeded.findings[k]),
            reverse=True,
        )
        assert [f["id"] for f in acme] == [seeded.findings[k] for k in expected]
        deviant = await walk(client, "/api/findings", verdict="deviant", round_id="r-a")
        assert {f["finding"]["provider"] for f in deviant} == {"acme"}

        failed = await walk(client, "/api/samples", model="m1", ok="false", limit=3)
        assert [s["id"] for s in failed] == sorted(
            (f.id for f in seeded.samples if f.model == "m1" and not f.ok), reverse=True
        )
        timeouts = await walk(client, "/api/samples", error_class="timeout", probe_id="p-a")
        assert [s["id"] for s in timeouts] == sorted(
            (f.id for f in seeded.samples if f.error_class == "timeout" and f.probe_id == "p-a"),
            reverse=True,
        )
        assert timeouts, "the seed has timeouts on p-a"


async def test_unknown_ids_are_404_and_bad_input_400_or_422(sqlite_url: str) -> None:
    seeded = seed(sqlite_url)
    async with serving(seeded.store) as client:
        for url in (
            "/api/rounds/no-such-round",
            "/api/rounds/no-such-round/report",
            "/api/findings/987654",
            "/api/providers/987654",
            "/api/samples/987654",
        ):
            response = await client.get(url)
            assert response.status_code == 404, url
            assert isinstance(response.json()["detail"], str) and "no " in response.json()["detail"]

        for url in ("/api/rounds", "/api/findings", "/api/samples"):
            for cursor in ("garbage", "eyJ4IjogMX0", paging._encode_cursor("other", 1)):
                response = await client.get(url, params={"cursor": cursor})
                assert response.status_code == 400, (url, cursor, response.text)
                assert "cursor" in response.json()["detail"]

        for url, params in (
            ("/api/rounds", {"limit": 0}),
            ("/api/rounds", {"limit": 501}),
            ("/api/findings", {"verdict": "weird"}),
            ("/api/samples", {"ok": "maybe"}),
            ("/api/samples", {"error_class": "nope"}),
            ("/api/incidents", {"state": "closed"}),
            ("/api/findings/0", {}),
            ("/api/samples/abc", {}),
            ("/api/samples", {"model": "m\x00"}),
        ):
            response = await client.get(url, params=params)
            assert response.status_code == 422, (url, params, response.text)
            assert isinstance(response.json()["detail"], list)
        assert (await client.get("/api/rounds", params={"limit": 500})).status_code == 200


async def test_nul_characters_are_refused_not_a_server_error(db_url: str) -> None:
    """PostgreSQL refuses NUL in a query parameter: it must never get one."""
    seeded = seed(db_url)
    nul_cursor = paging._encode_cursor("rounds", "2025-03-01T12:00:00+00:00", "r\x00")
    async with serving(seeded.store) as client:
        for url, code in (
            ("/api/rounds/r%00a", 422),
            ("/api/rounds/r%00a/report", 422),
            ("/api/findings?round_id=r%00a", 422),
            ("/api/samples?probe_id=p%00", 422),
            (f"/api/rounds?cursor={nul_cursor}", 400),
        ):
            response = await client.get(url)
            assert response.status_code == code, (url, response.text)
    assert queries.round_detail(seeded.store, "r\x00a") is None
    assert queries.samples(seeded.store, probe_id="p\x00").items == []
    assert queries.findings(seeded.store, model="m\x00").items == []


@pytest.mark.slow
async def test_report_endpoint_is_the_cli_report(seeded: Seeded, tmp_path: Path) -> None:
    async with serving(seeded.store) as client:
        for rid in ("r-d", ROUND_IDS[0]):
            api = await client.get(f"/api/rounds/{rid}/report")
            assert api.status_code == 200
            report = ["report", "--round", rid, "--format", "json"]
            cli = run_auditor(*report, "--database", seeded.url, cwd=tmp_path)
            assert cli.returncode == 0, cli.stderr
            assert api.text + "\n" == cli.stdout
            assert strict_json(api.text)["round"]["id"] == rid
        latest = await client.get("/api/rounds/latest/report")
        cli = run_auditor("report", "--format", "json", "--database", seeded.url, cwd=tmp_path)
        assert cli.returncode == 0, cli.stderr
        assert latest.status_code == 200 and latest.text + "\n" == cli.stdout


async def test_an_unreachable_database_is_a_json_503() -> None:
    store = Store(make_engine("postgresql+psycopg://postgres@127.0.0.1:1/auditor"))  # refused
    async with serving(store) as client:
        for url in (
            "/api/overview",
            "/api/rounds",
            "/api/samples/1",
            "/api/rounds/r/report",
            "/api/rounds/r/samples.parquet",
        ):
            response = await client.get(url)
            assert response.status_code == 503, (url, response.text)
            assert response.json() == {"detail": "the database did not answer"}
        assert (await client.get("/healthz")).status_code == 200


async def test_an_unexpected_failure_is_a_json_500(sqlite_url: str) -> None:
    """A row the records refuse (a diagnosis kind this version does not know) fails that
    request alone, with a JSON error naming no more than the exception's type."""
    seeded = seed(sqlite_url)
    finding_id = seeded.findings[("r-a", "m1", "acme")]
    with seeded.store.session() as s:
        row = s.get(FindingRow, finding_id)
        assert row is not None
        row.diagnoses = [{"kind": "from-the-future", "confidence": 2, "summary": "?"}]
        s.commit()
    async with serving(seeded.store) as client:
        response = await client.get(f"/api/findings/{finding_id}")
        assert response.status_code == 500
        assert response.json() == {"detail": "internal error (ValidationError)"}
        assert (await client.get("/api/rounds")).status_code == 200


async def test_latest_report_of_an_empty_database_is_404(sqlite_url: str) -> None:
    async with serving(new_store(sqlite_url)) as client:
        response = await client.get("/api/rounds/latest/report")
        assert response.status_code == 404 and response.json() == {"detail": "no rounds yet"}
        assert (await get_json(client, "/api/rounds")) == {"items": [], "next_cursor": None}


async def test_nan_statistics_are_null(sqlite_url: str) -> None:
    """SQLite keeps a NaN statistic as it was computed; every answer writes it as null."""
    seeded = seed(sqlite_url, nan=True)
    rid = "r-b"
    finding_id = seeded.findings[(rid, "m1", "bolt")]
    async with serving(seeded.store) as client:
        finding = await get_json(client, f"/api/findings/{finding_id}")
        (tested,) = [t for t in finding["finding"]["tests"] if t["name"] == "rate:expect_pass"]
        assert tested["statistic"] is None and tested["p_value"] is not None
        history = await get_json(client, f"/api/providers/{seeded.providers[('m1', 'bolt')]}")
        assert all(p["statistic"] is None for p in history["tests"]["rate:expect_pass"])
        report = await get_json(client, f"/api/rounds/{rid}/report")
        assert report["findings"][0]["tests"][0]["statistic"] is None
        page = await get_json(client, "/api/findings", round_id=rid)
        assert page["items"][0]["finding"]["tests"][0]["statistic"] is None


@pytest.mark.slow
async def test_no_secret_in_any_answer(db_url: str) -> None:
    """A provider configured with api_key_env and header values, and one whose base URL
    carries credentials and a key in its query: nothing the API answers shows them."""
    seeded = seed(db_url)
    secrets = (KEY_ENV, HEADER_NAME, SECRET_HEADER_VALUE, URL_PASSWORD, URL_QUERY_KEY)
    with seeded.store.session() as s:
        stored = json.dumps([p.config for p in s.execute(select(ProviderRow)).scalars()])
    assert KEY_ENV in stored and HEADER_NAME in stored, "the test's premise: the table has them"
    assert SECRET_HEADER_VALUE not in stored
    urls = ["/api/overview", "/api/providers", "/api/incidents", "/api/openapi.json", "/api/docs"]
    urls += [f"/api/providers/{pid}" for pid in seeded.providers.values()]
    urls += [f"/api/rounds/{rid}" for rid in seeded.starts]
    urls += [f"/api/rounds/{rid}/report" for rid in seeded.starts]
    parquet = [f"/api/rounds/{rid}/samples.parquet" for rid in seeded.starts]
    urls += [f"/api/findings/{fid}" for fid in seeded.findings.values()]
    urls += [f"/api/samples/{f.id}" for f in seeded.samples[::7]]
    async with serving(seeded.store) as client:
        bodies = {url: (await client.get(url)).text for url in urls}
        for url in parquet:  # every value of the file, as text
            answer = await client.get(url)
            assert answer.status_code == 200, url
            bodies[url] = json.dumps(
                pq.read_table(io.BytesIO(answer.content)).to_pylist(), default=str
            )
        for url in ("/api/rounds", "/api/findings", "/api/samples"):
            bodies[url] = json.dumps(await walk(client, url, limit=500))
    for url, body in bodies.items():
        for secret in secrets:
            assert secret not in body, (url, secret)


async def test_openapi_schema_resolves_under_the_mount(sqlite_url: str) -> None:
    async with serving(new_store(sqlite_url)) as client:
        schema = await get_json(client, "/api/openapi.json")
        assert schema["servers"] == [{"url": "/api"}]
        assert schema["info"]["title"] and schema["info"]["description"]
        paths = schema["paths"]
        assert set(paths) >= {
            "/overview",
            "/rounds",
            "/rounds/{round_id}",
            "/rounds/{round_id}/report",
            "/rounds/{round_id}/samples.parquet",
            "/rounds/latest/report",
            "/findings",
            "/findings/{finding_id}",
            "/providers",
            "/providers/{provider_id}",
            "/samples",
            "/samples/{sample_id}",
            "/incidents",
        }
        for path, operations in paths.items():
            assert set(operations) == {"get"}, "read-only"
            op = operations["get"]
            assert op["summary"] and op["description"], path
            assert "200" in op["responses"]
            if "{" in path:
                assert "404" in op["responses"], path
            if any(p["name"] == "cursor" for p in op.get("parameters", [])):
                assert "400" in op["responses"], path
            # every path resolves under the mount: the server URL + the path answers
            if "{" not in path:
                assert (await client.get("/api" + path)).status_code in (200, 404), path
        report = paths["/rounds/{round_id}/report"]["get"]["responses"]["200"]
        assert report["content"]["application/json"]["schema"]["$ref"].endswith("/Report")
        parquet = paths["/rounds/{round_id}/samples.parquet"]["get"]["responses"]["200"]
        assert list(parquet["content"]) == [MEDIA_TYPE]

        docs = await client.get("/api/docs")
        assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
        assert "/api/openapi.json" in docs.text and "GET /api/rounds/{round_id}" in docs.text
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", docs.text)
        assert "<script" not in docs.text
        for gone in ("/api/redoc", "/api/docs/oauth2-redirect"):
            assert (await client.get(gone)).status_code == 404


async def test_a_rounds_samples_as_parquet(db_url: str, tmp_path: Path) -> None:
    """The file is the export's samples table of the round: every endpoint's samples in id
    order, as `write_round_samples` writes them, served as a download; no file is left."""
    facts = build(db_url)
    expected = tmp_path / "expected.parquet"
    write_round_samples(facts.store, "r-a", expected)
    leftovers = set(Path(tempfile.gettempdir()).glob("auditor-round-*"))
    async with serving(facts.store) as client:
        answer = await client.get("/api/rounds/r-a/samples.parquet")
        assert answer.status_code == 200
        assert answer.headers["content-type"] == MEDIA_TYPE
        assert answer.headers["content-disposition"] == (
            'attachment; filename="round-r-a-samples.parquet"'
        )
        table = pq.read_table(io.BytesIO(answer.content))
        assert table.equals(pq.read_table(expected))
        assert table.schema.metadata[b"auditor.table"] == b"samples"
        ids = [r["sample_id"] for r in facts.sample_rows(round_id="r-a")]
        assert table.column("sample_id").to_pylist() == ids
        missing = await client.get("/api/rounds/r-zz/samples.parquet")
        assert missing.status_code == 404
        assert missing.json() == {"detail": "no round 'r-zz'"}
    assert set(Path(tempfile.gettempdir()).glob("auditor-round-*")) == leftovers
