"""What a round of a router and of the `params` suite adds to the dashboard, on real databases
(SQLite and PostgreSQL) filled through the real Store and served by uvicorn on loopback: a
finding's capability table and upstream breakdown in the JSON API (`/api/providers/{id}`,
`/api/findings/{id}`) and as tables on the provider and finding pages; a sample's reasoning
and upstream in `/api/samples` and, on the finding page, apart from the answer it came with.
Notes, reasoning and upstream names are untrusted text: the pages escape them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from helpers.db import new_store, set_round_times
from helpers.html import Node, parse
from sqlalchemy import select

from auditor.operations.settings import ServerConfig
from auditor.records import (
    Capability,
    CompletionRequest,
    CompletionResponse,
    Diagnosis,
    Evidence,
    Finding,
    Message,
    ProbeCase,
    RequestParams,
    UpstreamShare,
    Usage,
    utcnow,
)
from auditor.storage.repository import Store
from auditor.storage.tables import FindingRow, RoundRow
from auditor.web import queries
from auditor.web.dashboard import create_dashboard
from auditor.web.server import WebServer

DASH = "\N{EN DASH}"  # what a table shows for no value
XSS = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
THINKING = f"The user wants a number. {XSS} So: 4."
ANSWER = "2 + 2 = 4."
REFERENCE_THINKING = "Add two and two."

CAPABILITIES = [
    Capability(parameter="seed", status="ignored", judged="against_reference",
               reference="honoured", answers=3, honoured=0,
               note="3 of 3 seeded requests repeated show it ignored"),
    Capability(parameter="stop", status="rejected", judged="own_behaviour",
               note=f"400: stop is not supported {XSS}"),
    Capability(parameter="response_format.json_schema", status="honoured",
               judged="against_reference", reference="honoured", answers=4, honoured=4),
    Capability(parameter="logprobs", status="unknown", judged="own_behaviour"),
]  # fmt: skip
OLD_UPSTREAMS = [UpstreamShare(upstream="Primary", answers=20)]
UPSTREAMS = [
    UpstreamShare(upstream="Primary", answers=14),
    UpstreamShare(upstream="Fallback-Host", answers=6, errors=1, off_pin=6),
    UpstreamShare(upstream=f"{XSS}-host", answers=1),
]


@dataclass
class Routed:
    store: Store
    providers: dict[str, int]  # name -> id
    findings: dict[tuple[str, str], int]  # (round, provider) -> finding id
    samples: dict[tuple[str, str, str], int]  # (round, provider, probe) -> sample id


def _case(probe_id: str, text: str) -> ProbeCase:
    return ProbeCase(
        id=probe_id,
        suite="params",
        messages=[Message(role="user", content=text)],
        params=RequestParams(temperature=0, max_tokens=64),
    )


def _answer(
    text: str,
    reasoning: str | None = None,
    source: str | None = None,
    reasoning_tokens: int | None = None,
    upstream: str | None = None,
) -> CompletionResponse:
    return CompletionResponse(
        ok=True,
        status_code=200,
        text=text,
        reasoning=reasoning,
        reasoning_source=source,
        upstream=upstream,
        finish_reason="stop",
        usage=Usage(
            prompt_tokens=10,
            completion_tokens=5 + (reasoning_tokens or 0),
            total_tokens=15 + (reasoning_tokens or 0),
            reasoning_tokens=reasoning_tokens,
        ),
        latency_s=0.2,
    )


def _finding(provider: str, **fields: Any) -> Finding:
    base: dict[str, Any] = {
        "model": "m",
        "provider": provider,
        "baseline": "reference",
        "verdict": "consistent",
        "severity": "info",
        "requests": 2,
        "errors": 0,
        "tokens": 30,
    }
    return Finding(**{**base, **fields})


def seed(store: Store) -> Routed:
    """Model m: `router` (behind it, upstreams named; reasoning returned), `plain` (neither)
    and the reference. Round r1 ran the params suite: router's finding has a capability table
    and upstreams. Round r2, later, did not: router's finding has upstreams only, and its
    evidence quotes the answers stored in r2."""
    now = utcnow().replace(microsecond=0)
    providers = {
        "router": store.upsert_provider("m", "router", base_url="http://127.0.0.1:8109/v1"),
        "plain": store.upsert_provider("m", "plain", base_url="http://127.0.0.1:8110/v1"),
        "reference": store.upsert_provider("m", "reference", kind="reference"),
    }
    think, json_case = _case("think", "What is 2 + 2?"), _case("json", "Give JSON")
    store.upsert_probe_cases([think, json_case])
    answers: dict[tuple[str, str], CompletionResponse] = {
        ("router", "think"): _answer(ANSWER, THINKING, "reasoning_content", 42, "Fallback-Host"),
        ("router", "json"): _answer('{"a": 1}', None, None, 12, "Primary"),
        ("reference", "think"): _answer("2 + 2 = 4", REFERENCE_THINKING, "reasoning", 7),
        ("reference", "json"): _answer('{"a": 2}'),
        ("plain", "think"): _answer(ANSWER),
        ("plain", "json"): _answer('{"a": 2}'),
    }
    findings = {
        "r1": [
            _finding("router", capabilities=CAPABILITIES, upstreams=OLD_UPSTREAMS),
            _finding("plain"),
        ],
        "r2": [
            _finding(
                "router",
                verdict="deviant",
                severity="warning",
                diagnoses=[
                    Diagnosis(kind="reasoning", confidence=0.7, summary="reasoning ignored")
                ],
                evidence=[
                    Evidence(
                        probe="think",
                        reference="2 + 2 = 4",
                        provider=ANSWER,
                        note=f"reasoning differs {XSS}",
                    ),
                    Evidence(
                        probe="json",
                        reference='{"a": 2}',
                        provider='{"a": 1}',
                        note="differs from the reference",
                    ),
                ],
                upstreams=UPSTREAMS,
            ),
            _finding("plain"),
        ],
    }
    found: dict[tuple[str, str], int] = {}
    samples: dict[tuple[str, str, str], int] = {}
    for hours, rid in ((26, "r1"), (3, "r2")):
        store.start_round(
            RoundRow(id=rid, suite="params", suite_hash="h" * 12, auditor_version="t")
        )
        started = now - timedelta(hours=hours)
        set_round_times(store, rid, started, started + timedelta(minutes=5))
        for (name, probe), answer in answers.items():
            case = think if probe == "think" else json_case
            request = CompletionRequest.from_case(case, 0)
            sample_id = store.add_sample(rid, providers[name], request, answer, [], None)
            assert sample_id is not None
            samples[(rid, name, probe)] = sample_id
        store.save_findings(rid, findings[rid], "test", {})
        store.finish_round(rid, "complete", None)
        set_round_times(store, rid, started, started + timedelta(minutes=5))
        with store.session() as s:
            for row in s.execute(select(FindingRow).where(FindingRow.round_id == rid)).scalars():
                found[(rid, row.provider)] = row.id or 0
    return Routed(store=store, providers=providers, findings=found, samples=samples)


@asynccontextmanager
async def serving(store: Store) -> AsyncIterator[httpx.AsyncClient]:
    """The dashboard as `auditor serve` serves it: the pages and the API under /api."""
    async with (
        WebServer(create_dashboard(store), ServerConfig(port=0)) as server,
        httpx.AsyncClient(base_url=server.url, trust_env=False, timeout=20) as client,
    ):
        yield client


async def get(client: httpx.AsyncClient, path: str, **params: Any) -> httpx.Response:
    response = await client.get(path, params=params)
    assert response.status_code == 200, (path, response.text[:500])
    return response


def dumped(records: list[Capability] | list[UpstreamShare]) -> list[dict[str, Any]]:
    return [r.model_dump(mode="json") for r in records]


def rows(table: Node, testid: str, key: str) -> dict[str, Node]:
    return {r[key]: r for r in table.testids(testid)}


def escaped(html: str) -> None:
    """Untrusted text shown as text: never a live script."""
    assert XSS not in html and ESCAPED in html
    assert not [s for s in parse(html).tags("script") if "alert" in s.text]


# --- the tests ------------------------------------------------------------------------------


async def test_provider_api_carries_its_latest_capability_table_and_upstreams(
    db_url: str,
) -> None:
    routed = seed(new_store(db_url))
    async with serving(routed.store) as client:
        router = (await get(client, f"/api/providers/{routed.providers['router']}")).json()
        plain = (await get(client, f"/api/providers/{routed.providers['plain']}")).json()
    # r2 probed no parameter: the table is r1's, named by its round and finding.
    capabilities = router["capabilities"]
    assert capabilities["round_id"] == "r1"
    assert capabilities["finding_id"] == routed.findings[("r1", "router")]
    assert capabilities["capabilities"] == dumped(CAPABILITIES)
    assert capabilities["at"] == router["points"][0]["at"]
    # Both rounds named upstreams: r2's, the latest.
    upstreams = router["upstreams"]
    assert upstreams["round_id"] == "r2"
    assert upstreams["finding_id"] == routed.findings[("r2", "router")]
    assert upstreams["upstreams"] == dumped(UPSTREAMS)
    assert [p["round_id"] for p in router["points"]] == ["r1", "r2"]

    # Present and null where no round had them, as `context_window`.
    assert plain["capabilities"] is None and plain["upstreams"] is None
    assert plain["context_window"] is None and len(plain["points"]) == 2


async def test_finding_api_carries_upstreams_and_capabilities(db_url: str) -> None:
    routed = seed(new_store(db_url))
    async with serving(routed.store) as client:
        old = (await get(client, f"/api/findings/{routed.findings[('r1', 'router')]}")).json()
        new = (await get(client, f"/api/findings/{routed.findings[('r2', 'router')]}")).json()
        plain = (await get(client, f"/api/findings/{routed.findings[('r2', 'plain')]}")).json()
        listed = (await get(client, "/api/findings", provider="router")).json()
    assert old["finding"]["capabilities"] == dumped(CAPABILITIES)
    assert old["finding"]["upstreams"] == dumped(OLD_UPSTREAMS)
    assert new["finding"]["capabilities"] is None
    assert new["finding"]["upstreams"] == dumped(UPSTREAMS)
    assert new["finding"]["diagnoses"][0]["kind"] == "reasoning"
    assert plain["finding"]["upstreams"] is None and plain["finding"]["capabilities"] is None
    assert [f["finding"]["upstreams"] for f in listed["items"]] == [
        dumped(UPSTREAMS),
        dumped(OLD_UPSTREAMS),
    ], "newest round first"


async def test_samples_api_carries_reasoning_and_upstream(db_url: str) -> None:
    routed = seed(new_store(db_url))
    think = routed.samples[("r2", "router", "think")]
    async with serving(routed.store) as client:
        page = (await get(client, "/api/samples", round_id="r2", provider="router")).json()
        detail = (await get(client, f"/api/samples/{think}")).json()
        plain = (await get(client, "/api/samples", round_id="r2", provider="plain")).json()
    listed = {s["probe_id"]: s for s in page["items"]}
    assert set(listed) == {"think", "json"}
    expected = {
        "think": {
            "reasoning_text": THINKING,
            "reasoning_source": "reasoning_content",
            "reasoning_tokens": 42,
            "upstream": "Fallback-Host",
            "output_text": ANSWER,
        },
        "json": {
            "reasoning_text": None,
            "reasoning_source": None,
            "reasoning_tokens": 12,
            "upstream": "Primary",
            "output_text": '{"a": 1}',
        },
    }
    for probe, fields in expected.items():
        assert {k: listed[probe][k] for k in fields} == fields, probe
    assert detail["id"] == think
    assert {k: detail[k] for k in expected["think"]} == expected["think"]
    assert detail["completion_tokens"] == 47, "the reasoning tokens are completion tokens"
    for sample in plain["items"]:
        assert sample["reasoning_text"] is None and sample["reasoning_source"] is None
        assert sample["reasoning_tokens"] is None and sample["upstream"] is None


async def test_provider_page_shows_request_parameters_and_upstreams(db_url: str) -> None:
    routed = seed(new_store(db_url))
    async with serving(routed.store) as client:
        response = await get(client, f"/providers/{routed.providers['router']}")
        plain = parse((await get(client, f"/providers/{routed.providers['plain']}")).text)
    doc = parse(response.text)

    table = doc.one("capabilities")
    capability = rows(table, "capability-row", "data-parameter")
    assert list(capability) == [c.parameter for c in CAPABILITIES]
    assert {p: r["data-status"] for p, r in capability.items()} == {
        c.parameter: c.status for c in CAPABILITIES
    }
    seed_row = capability["seed"]
    assert seed_row.one("capability-status")["class"] == "cap-ignored"
    assert seed_row.one("capability-status").words() == "ignored"
    assert seed_row.one("capability-reference").words() == "honoured"
    assert seed_row.one("capability-units").words() == "0 of 3"
    assert "against the reference" in seed_row.words()
    stop = capability["stop"]
    assert stop.one("capability-status")["class"] == "cap-rejected"
    assert stop.one("capability-reference").words() == DASH, "the reference was not asked"
    assert stop.one("capability-units").words() == DASH, "no answer to judge"
    assert "from its own answers" in stop.words()
    assert stop.one("capability-note").text == f"400: stop is not supported {XSS}"
    assert capability["response_format.json_schema"].one("capability-units").words() == "4 of 4"
    source = doc.one("capabilities-from")
    assert [a["href"] for a in source.tags("a")] == [
        "/rounds/r1",
        f"/findings/{routed.findings[('r1', 'router')]}",
    ]

    upstream = rows(doc.one("upstreams"), "upstream-row", "data-upstream")
    assert list(upstream) == [u.upstream for u in UPSTREAMS], "r2's, not r1's"
    cells = [c.words() for c in upstream["Fallback-Host"].tags("td")]
    assert cells == ["Fallback-Host", "6", "1", "6"]
    assert upstream["Fallback-Host"].testids("off-pin")
    assert not upstream["Primary"].testids("off-pin")
    assert [a["href"] for a in doc.one("upstreams-from").tags("a")] == [
        "/rounds/r2",
        f"/findings/{routed.findings[('r2', 'router')]}",
    ]
    escaped(response.text)

    headings = [h.words() for h in plain.tags("h2")]
    assert "Request parameters" not in headings and "Upstreams" not in headings
    assert not plain.testids("capabilities") and not plain.testids("upstreams")


async def test_finding_page_shows_reasoning_apart_from_the_answer(db_url: str) -> None:
    routed = seed(new_store(db_url))
    async with serving(routed.store) as client:
        response = await get(client, f"/findings/{routed.findings[('r2', 'router')]}")
        old = parse((await get(client, f"/findings/{routed.findings[('r1', 'router')]}")).text)
        plain = parse((await get(client, f"/findings/{routed.findings[('r2', 'plain')]}")).text)
    doc = parse(response.text)
    assert [d["data-kind"] for d in doc.testids("diagnosis-row")] == ["reasoning"]

    evidence = rows(doc.one("evidence"), "evidence-row", "data-probe")
    assert list(evidence) == ["think", "json"]
    provider = evidence["think"].one("evidence-provider")
    (answer, thought) = provider.tags("pre")
    assert answer.text == ANSWER, "the answer alone; the reasoning apart"
    details = provider.one("sample-reasoning")
    assert details.tag == "details" and "open" not in details.attrs, "collapsed"
    assert details.tags("summary")[0].words() == "reasoning (42 tokens, from reasoning_content)"
    assert thought.text == THINKING and any(n is thought for n in details.walk())
    assert provider.one("sample-upstream").words() == "served by Fallback-Host"
    reference = evidence["think"].one("evidence-reference")
    assert reference.tags("pre")[0].text == "2 + 2 = 4"
    summary = reference.one("sample-reasoning").tags("summary")[0]
    assert summary.words() == "reasoning (7 tokens, from reasoning)"
    assert not reference.testids("sample-upstream"), "the reference names no upstream"

    hidden = evidence["json"].one("evidence-provider")
    assert not hidden.testids("sample-reasoning")
    assert hidden.one("sample-reasoning-hidden").words() == (
        "12 reasoning tokens, the reasoning not returned"
    )
    assert hidden.one("sample-upstream").words() == "served by Primary"
    plain_reference = evidence["json"].one("evidence-reference")
    for extra in ("sample-reasoning", "sample-reasoning-hidden", "sample-upstream"):
        assert not plain_reference.testids(extra), "no reasoning, no upstream: the answer only"

    upstream = rows(doc.one("upstreams"), "upstream-row", "data-upstream")
    assert list(upstream) == [u.upstream for u in UPSTREAMS]
    assert not doc.testids("capabilities"), "r2 probed no parameter"
    escaped(response.text)  # the reasoning, the note, an upstream's name

    capability = rows(old.one("capabilities"), "capability-row", "data-parameter")
    assert {p: r["data-status"] for p, r in capability.items()} == {
        c.parameter: c.status for c in CAPABILITIES
    }
    assert capability["seed"].one("capability-status")["class"] == "cap-ignored"
    assert list(rows(old.one("upstreams"), "upstream-row", "data-upstream")) == ["Primary"]
    assert not old.testids("evidence-row")
    assert not plain.testids("capabilities") and not plain.testids("upstreams")


def test_evidence_samples_match_the_quoted_answers(sqlite_url: str) -> None:
    """A side is the sample whose answer the pair quotes, in the finding's round; a text no
    stored answer starts with (a refusal, a reference answer of another round) has none."""
    routed = seed(new_store(sqlite_url))
    store = routed.store
    quoted = Evidence(probe="think", reference="2 + 2", provider=ANSWER[:4], note="")
    elsewhere = Evidence(probe="think", reference="an older answer", provider="refused", note="")
    first, second = queries.evidence_samples(store, "r1", "m", "router", [quoted, elsewhere])
    assert first.provider is not None and first.reference is not None
    assert first.provider.id == routed.samples[("r1", "router", "think")]
    assert first.reference.id == routed.samples[("r1", "reference", "think")]
    assert first.provider.reasoning_text == THINKING
    assert second.provider is None and second.reference is None
    assert queries.evidence_samples(store, "r1", "m", "router", []) == []
    (absent,) = queries.evidence_samples(store, "r9", "m", "nobody", [quoted])
    assert absent.provider is None and absent.reference is None


async def test_openapi_schema_describes_the_new_fields(sqlite_url: str) -> None:
    async with serving(new_store(sqlite_url)) as client:
        schema = (await get(client, "/api/openapi.json")).json()
    components = schema["components"]["schemas"]

    def properties(name: str) -> dict[str, Any]:
        (found,) = [v for k, v in components.items() if k in (name, f"{name}-Output")]
        return dict(found["properties"])

    history = properties("ProviderHistory")
    assert {"context_window", "capabilities", "upstreams"} <= set(history)
    assert properties("CapabilityReading").keys() >= {"round_id", "finding_id", "capabilities"}
    assert properties("UpstreamReading").keys() >= {"round_id", "finding_id", "upstreams"}
    assert {"upstreams", "capabilities"} <= set(properties("Finding"))
    assert properties("Capability")["status"]["enum"] == [
        "honoured",
        "rejected",
        "ignored",
        "unknown",
    ]
    assert {"upstream", "answers", "errors", "off_pin"} <= set(properties("UpstreamShare"))
    fields = {"reasoning_text", "reasoning_source", "reasoning_tokens", "upstream"}
    assert fields <= set(properties("SampleView")) and fields <= set(properties("SampleDetail"))
