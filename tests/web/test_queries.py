"""The dashboard's read queries on real databases (SQLite and PostgreSQL), filled through the
real Store (helpers/seeded.py): latest verdicts and how long they have held, keyset
pagination, filters, totals. The expectations are computed from what `seed()` recorded, in
plain Python, never from the queries under test.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from statistics import mean
from typing import Any

import pytest
from helpers.db import new_store
from helpers.records import finding
from helpers.seeded import (
    BACKENDS,
    HEADER_NAME,
    KEY_ENV,
    ROUND_IDS,
    RUNNING,
    T0,
    UNASSESSED,
    URL_PASSWORD,
    URL_QUERY_KEY,
    VERDICTS,
    Seeded,
    add_sample,
    facts_of,
    seed,
    seeded_database,
)
from sqlalchemy import event, select, update

from auditor.records import Message, ProbeCase, as_utc
from auditor.storage.repository import Store
from auditor.storage.tables import FindingRow, RoundRow
from auditor.web import queries


def expected_since(verdicts: list[str | None]) -> int:
    """Index of the round where the last verdict's unbroken run began (walking back)."""
    assessed = [(i, v) for i, v in enumerate(verdicts) if v is not None]
    last = assessed[-1][1]
    start = assessed[-1][0]
    for i, v in reversed(assessed):
        if v != last:
            break
        start = i
    return start


@pytest.fixture(scope="module", params=BACKENDS)
def seeded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Seeded]:
    """One seeded database per backend, shared by the tests that only read it (filling one
    takes a second or two; tests that write get their own, `fresh`)."""
    with seeded_database(request.param, tmp_path_factory.mktemp("queries")) as data:
        yield data


@pytest.fixture
def fresh(db_url: str) -> Seeded:
    return seed(db_url)


# --- overview -------------------------------------------------------------------------------


def test_overview_shows_each_providers_latest_verdict_and_since_when(seeded: Seeded) -> None:
    view = queries.overview(seeded.store)
    cells = {(c.model, c.provider): c for c in view.cells}
    assert set(cells) == {*VERDICTS, UNASSESSED}, "references are not cells"
    assert view.models == ["m1", "m2"]
    assert view.providers == ["acme", "bolt", "kite", "zeta"]
    last_round = ROUND_IDS[-1]
    for pair, verdicts in VERDICTS.items():
        cell = cells[pair]
        assert cell.verdict == verdicts[-1], pair
        assert cell.round_id == last_round
        assert cell.finding_id == seeded.findings[(last_round, *pair)]
        assert cell.provider_id == seeded.providers[pair]
        assert cell.since == seeded.starts[ROUND_IDS[expected_since(verdicts)]], pair
    # the hand-checked cases, so that the walk above is not the only oracle
    assert cells[("m1", "acme")].since == seeded.starts["r-d"]
    assert cells[("m1", "bolt")].since == seeded.starts["r-b"]
    assert cells[("m1", "kite")].since == seeded.starts["r-e"], "a gap does not break a run"
    assert cells[("m2", "acme")].since == seeded.starts["r-c"]
    assert cells[("m1", "bolt")].trusted and not cells[("m1", "acme")].trusted
    assert cells[("m1", "acme")].diagnoses[0].kind == "quantization"
    zeta = cells[UNASSESSED]
    assert zeta.verdict is None and zeta.since is None and zeta.finding_id is None


def test_overview_links_open_incidents(seeded: Seeded) -> None:
    view = queries.overview(seeded.store)
    cells = {(c.model, c.provider): c for c in view.cells}
    open_pairs = {(i.model, i.provider) for i in view.open_incidents}
    # acme/m1 turned deviant in r-d and stayed; acme/m2 went unavailable in r-c; bolt resolved.
    assert open_pairs == {("m1", "acme"), ("m2", "acme"), ("suite:deep", "auditor")}
    acme = cells[("m1", "acme")].open_incident
    assert acme is not None and acme.opened_round_id == "r-d" and acme.state == "open"
    m2 = cells[("m2", "acme")].open_incident
    assert m2 is not None and m2.verdict == "unavailable" and m2.opened_round_id == "r-c"
    assert cells[("m1", "bolt")].open_incident is None
    assert view.last_round is not None
    newest = seeded.rounds_newest_first()[0]
    assert view.last_round.id == newest


def test_overview_of_an_empty_database(sqlite_url: str) -> None:
    view = queries.overview(new_store(sqlite_url))
    assert view.cells == [] and view.open_incidents == [] and view.last_round is None


def _assess(store: Store, rid: str, at: datetime, verdicts: dict[str, str]) -> None:
    """A complete round of model `m` started at `at`, with these providers' verdicts."""
    store.start_round(RoundRow(id=rid, suite="core", suite_hash="h", auditor_version="t"))
    with store.session() as s:
        s.execute(update(RoundRow).where(RoundRow.id == rid).values(started_at=at))
        s.commit()
    store.finish_round(rid, "complete", None)
    _judge(store, rid, verdicts)


def _judge(store: Store, rid: str, verdicts: dict[str, str]) -> None:
    """Write (or recompute, as `auditor compare` does) a round's findings."""
    found = [
        finding(provider=p, verdict=v, severity="info", requests=1, errors=0, tokens=1)
        for p, v in verdicts.items()
    ]
    store.save_findings(rid, found, "test-detector", {})


def test_overview_since_when_rounds_start_at_the_same_time(db_url: str) -> None:
    """Findings are ordered by their round's start, then by the order they were written; the
    run of the latest verdict starts after the latest other verdict, strictly later."""
    store = new_store(db_url)
    ids = {p: store.upsert_provider("m", p) for p in ("tie", "run", "late")}
    t = [T0 + timedelta(hours=h) for h in range(3)]
    _assess(store, "x-a", t[0], {"tie": "consistent", "run": "deviant", "late": "consistent"})
    _assess(store, "x-c", t[1], {"tie": "deviant", "run": "consistent", "late": "deviant"})
    # started with x-c, written after it
    _assess(store, "x-b", t[1], {"tie": "consistent", "run": "consistent", "late": "consistent"})
    _assess(store, "x-d", t[2], {"run": "consistent", "late": "consistent"})

    def cells() -> dict[str, tuple[str | None, str | None, datetime | None]]:
        view = queries.overview(store)
        return {c.provider: (c.verdict, c.round_id, c.since) for c in view.cells}

    assert cells() == {
        # the tie goes to the finding written last; the other verdict at the same start
        # leaves no later round, so the run is that round alone
        "tie": ("consistent", "x-b", t[1]),
        # both rounds started at t1 begin the run
        "run": ("consistent", "x-d", t[1]),
        # x-b started with the deviant x-c: not after it, so not in the run
        "late": ("consistent", "x-d", t[2]),
    }
    tie = queries.provider_history(store, ids["tie"])
    assert tie is not None and [p.round_id for p in tie.points] == ["x-a", "x-c", "x-b"]

    # Recomputing x-c writes its findings last: now they win the tie. Recomputing the oldest
    # round changes nothing: it started first.
    _judge(store, "x-c", {"tie": "deviant", "run": "consistent", "late": "deviant"})
    _judge(store, "x-a", {"tie": "consistent", "run": "deviant", "late": "consistent"})
    assert cells() == {
        "tie": ("deviant", "x-c", t[1]),
        "run": ("consistent", "x-d", t[1]),
        "late": ("consistent", "x-d", t[2]),
    }
    tie = queries.provider_history(store, ids["tie"])
    assert tie is not None and [p.round_id for p in tie.points] == ["x-a", "x-b", "x-c"]
    assert [p.at for p in tie.points] == [t[0], t[1], t[1]]


def test_overview_since_on_random_histories(db_url: str) -> None:
    """Rounds in random order of start (many starting together), providers skipping rounds,
    rounds recomputed: each cell is what the definition gives, computed here from the rows."""
    rng = random.Random(5)
    store = new_store(db_url)
    names = ["p0", "p1", "p2", "p3"]
    for p in names:
        store.upsert_provider("m", p)
    verdicts = ["consistent", "deviant", "inconclusive", "unavailable"]
    judged: dict[str, dict[str, str]] = {}
    for r in range(40):
        rid = f"h-{r:02d}"
        judged[rid] = {p: rng.choice(verdicts[: 2 + r % 3]) for p in names if rng.random() < 0.8}
        _assess(store, rid, T0 + timedelta(hours=rng.randrange(12)), judged[rid])
        if rng.random() < 0.2:
            _judge(store, old := rng.choice(list(judged)), judged[old])
    with store.session() as s:
        rows = s.execute(select(FindingRow, RoundRow.started_at).join(RoundRow)).all()  # type: ignore[arg-type]
    expected = {}
    for p in names:
        mine = sorted((as_utc(a), f.id, f.verdict, f.round_id) for f, a in rows if f.provider == p)
        at, _, verdict, rid = mine[-1]
        broke = max((a for a, _, v, _ in mine if v != verdict), default=None)
        run = [a for a, *_ in mine if broke is None or a > broke]
        expected[p] = (verdict, rid, min(run, default=at))
    view = queries.overview(store)
    assert {c.provider: (c.verdict, c.round_id, c.since) for c in view.cells} == expected


# --- rounds ---------------------------------------------------------------------------------


def test_rounds_pages_visit_every_round_once_newest_first(seeded: Seeded) -> None:
    expected = seeded.rounds_newest_first()
    for limit in (1, 2, 5, 6, 500):
        seen, cursor, pages = [], None, 0
        while True:
            page = queries.rounds(seeded.store, limit=limit, cursor=cursor)
            assert len(page.items) <= limit
            seen += [r.id for r in page.items]
            pages += 1
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == expected, limit
        assert pages == -(-len(expected) // limit)


def test_round_summaries_count_requests_errors_and_verdicts(seeded: Seeded) -> None:
    items = {r.id: r for r in queries.rounds(seeded.store, limit=50).items}
    for i, rid in enumerate(ROUND_IDS):
        assessed = [pair for pair, v in VERDICTS.items() if v[i] is not None]
        facts = [f for pair in assessed for f in facts_of(seeded, rid, *pair)]
        assert items[rid].requests == len(facts)
        assert items[rid].errors == sum(not f.ok for f in facts)
        verdicts: dict[str, int] = {}
        for pair in assessed:
            verdict = VERDICTS[pair][i]
            assert verdict is not None
            verdicts[verdict] = verdicts.get(verdict, 0) + 1
        assert items[rid].verdicts == verdicts
        assert items[rid].status == "complete" and items[rid].started_at == seeded.starts[rid]
    # A running round has no findings yet: its providers' samples are counted instead.
    running = [f for f in seeded.samples if f.round_id == RUNNING and f.provider != "reference"]
    assert items[RUNNING].status == "running" and items[RUNNING].verdicts == {}
    assert items[RUNNING].requests == len(running)
    assert items[RUNNING].errors == sum(not f.ok for f in running)


def test_round_detail_has_findings_and_per_endpoint_totals(seeded: Seeded) -> None:
    rid = "r-a"
    detail = queries.round_detail(seeded.store, rid)
    assert detail is not None and detail.round.id == rid and detail.round.complete
    assert [(f.model, f.provider) for f in detail.findings] == sorted(
        pair for pair, v in VERDICTS.items() if v[ROUND_IDS.index(rid)] is not None
    )
    for f in detail.findings:
        assert f.id == seeded.findings[(rid, f.model, f.provider)]
        assert f.provider_id == seeded.providers[(f.model, f.provider)]
    totals = {(t.model, t.provider): t for t in detail.totals}
    assert set(totals) == set(seeded.providers), "every endpoint, the reference included"
    for pair, t in totals.items():
        facts = facts_of(seeded, rid, *pair)
        latencies = [f.latency_ms for f in facts if f.latency_ms is not None]
        assert t.requests == len(facts)
        assert t.errors == sum(not f.ok for f in facts)
        assert t.tokens == sum(f.tokens or 0 for f in facts)
        assert t.latency_ms_mean == pytest.approx(mean(latencies))
        assert t.errors_by_class == {
            c: sum(f.error_class == c for f in facts) for c in {f.error_class for f in facts} if c
        }
        assert t.kind == ("reference" if pair[1] == "reference" else "provider")
    assert queries.round_detail(seeded.store, "no-such-round") is None


# --- providers ------------------------------------------------------------------------------


def test_provider_history_oldest_first_with_latency_and_test_series(seeded: Seeded) -> None:
    pair = ("m1", "kite")
    history = queries.provider_history(seeded.store, seeded.providers[pair])
    assert history is not None
    assessed = [(i, rid) for i, rid in enumerate(ROUND_IDS) if VERDICTS[pair][i] is not None]
    assert [p.round_id for p in history.points] == [rid for _, rid in assessed]
    for point, (i, rid) in zip(history.points, assessed, strict=True):
        facts = facts_of(seeded, rid, *pair)
        latencies = [f.latency_ms for f in facts if f.latency_ms is not None]
        assert point.at == seeded.starts[rid]
        assert point.verdict == VERDICTS[pair][i]
        assert point.finding_id == seeded.findings[(rid, *pair)]
        assert point.requests == len(facts) and point.errors == sum(not f.ok for f in facts)
        assert point.error_rate == pytest.approx(point.errors / point.requests)
        assert point.latency_ms_mean == pytest.approx(mean(latencies))
    assert set(history.tests) == {"rate:expect_pass", "greedy:exact_match"}, "not_available out"
    series = history.tests["rate:expect_pass"]
    assert [t.round_id for t in series] == [rid for _, rid in assessed]
    for t, (i, _) in zip(series, assessed, strict=True):
        assert t.statistic == pytest.approx(0.1 * i) and t.n == 10 + i
        assert (t.honest_low, t.honest_high) == (pytest.approx(-0.2), pytest.approx(0.2 + i / 100))
    assert history.provider.base_url == "http://127.0.0.1:9/v1", "no credentials, no query"
    assert history.incidents == []


def test_provider_history_keeps_the_last_rounds_and_lists_incidents(seeded: Seeded) -> None:
    pair = ("m2", "acme")
    history = queries.provider_history(seeded.store, seeded.providers[pair], limit=2)
    assert history is not None
    assert [p.round_id for p in history.points] == ROUND_IDS[-2:]
    opened = [i.opened_round_id for i in history.incidents]
    assert opened == ["r-c", "r-d", "r-e"], "newest first"
    assert [i.state for i in history.incidents] == ["open", "resolved", "resolved"]
    assert queries.provider_history(seeded.store, 10**6) is None
    assert queries.provider_history(seeded.store, 2**40) is None


def test_unassessed_provider_and_reference_have_empty_histories(seeded: Seeded) -> None:
    for pair in (UNASSESSED, ("m1", "reference")):
        history = queries.provider_history(seeded.store, seeded.providers[pair])
        assert history is not None and history.points == [] and history.tests == {}
        assert history.provider.name == pair[1]


def test_providers_list_shows_no_configuration(seeded: Seeded) -> None:
    listed = queries.providers(seeded.store)
    assert {(p.model, p.name) for p in listed} == set(seeded.providers)
    text = json.dumps([p.model_dump(mode="json") for p in listed])
    for secret in (KEY_ENV, HEADER_NAME, URL_PASSWORD, URL_QUERY_KEY, "user:"):
        assert secret not in text
    assert {p.kind for p in queries.providers(seeded.store, kind="reference")} == {"reference"}


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://u:p@h.example:8443/v1?key=s#f", "http://h.example:8443/v1"),
        ("https://[::1]/v1", "https://[::1]/v1"),
        ("http://127.0.0.1:8101/v1", "http://127.0.0.1:8101/v1"),
        (None, None),
    ],
)
def test_public_url_drops_credentials_and_query(url: str | None, shown: str | None) -> None:
    assert queries.public_url(url) == shown


# --- findings -------------------------------------------------------------------------------


def _all_findings(store: Store, **filters: Any) -> list[int]:
    ids, cursor = [], None
    while True:
        page = queries.findings(store, cursor=cursor, **filters)
        ids += [f.id for f in page.items]
        if page.next_cursor is None:
            return ids
        cursor = page.next_cursor


def test_findings_pages_newest_round_first_and_filters(seeded: Seeded) -> None:
    def expected(pred: Any = lambda rid, model, name: True) -> list[int]:
        keys = [k for k in seeded.findings if pred(*k)]
        keys.sort(key=lambda k: (seeded.starts[k[0]], seeded.findings[k]), reverse=True)
        return [seeded.findings[k] for k in keys]

    everything = expected()
    assert len(everything) == sum(v is not None for vs in VERDICTS.values() for v in vs)
    for limit in (1, 3, 500):
        assert _all_findings(seeded.store, limit=limit) == everything
    assert _all_findings(seeded.store, limit=2, model="m2") == expected(lambda r, m, n: m == "m2")
    assert _all_findings(seeded.store, limit=2, provider="acme") == expected(
        lambda r, m, n: n == "acme"
    )
    assert _all_findings(seeded.store, round_id="r-d") == expected(lambda r, m, n: r == "r-d")

    def is_deviant(rid: str, model: str, name: str) -> bool:
        return VERDICTS[(model, name)][ROUND_IDS.index(rid)] == "deviant"

    assert _all_findings(seeded.store, limit=2, verdict="deviant") == expected(is_deviant)
    assert _all_findings(seeded.store, model="m1", provider="zeta") == []


def test_finding_is_the_report_contracts_finding(seeded: Seeded) -> None:
    rid = "r-d"
    by_pair = {(f.model, f.provider): f for f in seeded.store.findings(rid)}
    for pair in by_pair:
        detail = queries.finding(seeded.store, seeded.findings[(rid, *pair)])
        assert detail is not None
        assert detail.finding == by_pair[pair]
        assert detail.round.id == rid and detail.round.started_at == seeded.starts[rid]
        assert detail.provider_id == seeded.providers[pair]
        assert detail.detector == "test-detector"
    assert queries.finding(seeded.store, 10**9) is None
    assert queries.finding(seeded.store, 2**40) is None, "beyond PostgreSQL's ids: no row"


# --- samples --------------------------------------------------------------------------------


def _all_samples(
    store: Store, limit: int = 7, start: str | None = None, **filters: Any
) -> list[int]:
    ids, cursor = [], start
    while True:
        page = queries.samples(store, limit=limit, cursor=cursor, **filters)
        assert len(page.items) <= limit
        ids += [s.id for s in page.items]
        if page.next_cursor is None:
            return ids
        cursor = page.next_cursor


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"round_id": "r-b"},
        {"model": "m2"},
        {"provider": "acme"},
        {"model": "m1", "provider": "reference"},
        {"probe_id": "p-b"},
        {"ok": False},
        {"ok": True, "model": "m1"},
        {"error_class": "timeout"},
        {"round_id": RUNNING, "provider": "kite", "ok": True},
        {"round_id": "r-d", "model": "m1"},
        {"round_id": "r-b", "probe_id": "p-a"},
        {"probe_id": "p-a", "provider": "acme"},
        {"model": "m1", "probe_id": "p-b", "ok": True},
        {"provider": "nobody"},
    ],
)
def test_samples_pages_and_filters(seeded: Seeded, filters: dict[str, Any]) -> None:
    expected = sorted(
        (f.id for f in seeded.samples if all(getattr(f, k) == v for k, v in filters.items())),
        reverse=True,
    )
    assert _all_samples(seeded.store, **filters) == expected
    if filters == {}:
        assert len(expected) == len(seeded.samples) > 100


@pytest.mark.parametrize("filters", [{"ok": False}, {"error_class": "rate_limited"}])
def test_unindexed_filters_read_a_bounded_window_per_page(
    seeded: Seeded, filters: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a window of 10 ids a page comes back short (or empty) but with a cursor, and
    following the cursors still visits every matching sample once."""
    monkeypatch.setattr(queries._samples, "SCAN_WINDOW", 10)
    expected = sorted(
        (f.id for f in seeded.samples if all(getattr(f, k) == v for k, v in filters.items())),
        reverse=True,
    )
    ids, cursor, pages = [], None, []
    while True:
        page = queries.samples(seeded.store, limit=3, cursor=cursor, **filters)
        pages.append(len(page.items))
        ids += [s.id for s in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert ids == expected
    assert min(pages) < 3 and len(pages) >= len(seeded.samples) // 10, pages
    assert len(_all_samples(seeded.store, limit=3, round_id="r-b", **filters)) > 0, "narrowed"


def _plans(store: Store, call: Any) -> list[list[str]]:
    """SQLite's plan of each statement `call()` runs."""
    statements: list[tuple[str, Any]] = []

    def log(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        statements.append((statement, params))

    event.listen(store.engine, "before_cursor_execute", log)
    try:
        call()
    finally:
        event.remove(store.engine, "before_cursor_execute", log)
    with store.engine.connect() as conn:
        return [
            [str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params)]
            for sql, params in statements
        ]


@pytest.mark.parametrize(
    ("filters", "index"),
    [
        ({"provider": "kite"}, "ix_samples_provider_order (provider_id=? AND id<?)"),
        ({"round_id": "r-b"}, "ix_samples_round_order (round_id=? AND id<?)"),
        ({"round_id": "r-b", "provider": "kite"}, "ix_samples_round_order (round_id=? AND id<?)"),
        ({"round_id": "r-b", "probe_id": "p-a"}, "ix_samples_round_order (round_id=? AND id<?)"),
        ({"probe_id": "p-a"}, "ix_samples_probe_order (probe_id=? AND id<?)"),
        ({"model": "m2"}, "ix_samples_provider_order (provider_id=? AND id<?)"),
    ],
)
def test_a_samples_page_reads_an_index_in_id_order(
    seeded: Seeded, filters: dict[str, Any], index: str
) -> None:
    """No sort of every match: one range of an index, read newest first until the page is
    full (a model's endpoints: one range each, their heads merged). SQLite only: it plans
    without statistics, so its plan is the same on any data."""
    if not seeded.url.startswith("sqlite"):
        pytest.skip("PostgreSQL plans from statistics; bench/dashboard.py shows its plans")
    first = queries.samples(seeded.store, limit=1, **filters)
    assert first.next_cursor is not None
    plans = _plans(
        seeded.store,
        lambda: queries.samples(seeded.store, limit=1, cursor=first.next_cursor, **filters),
    )
    page = plans[-1]
    assert f"SEARCH samples USING INDEX {index}" in page, page
    if "model" in filters:  # each endpoint's head (at most a page) sorted for the merge
        assert "MERGE (UNION ALL)" in page, page
        assert page.count(f"SEARCH samples USING INDEX {index}") == 3, page
    else:
        assert not any("TEMP B-TREE" in line for line in page), page


def test_overview_and_provider_history_read_no_whole_table(seeded: Seeded) -> None:
    """Index seeks per provider (its latest finding, its latest of each verdict, the first
    of its run), never a pass over every finding. SQLite only, as above."""
    if not seeded.url.startswith("sqlite"):
        pytest.skip("PostgreSQL plans from statistics; bench/dashboard.py shows its plans")
    pair_id = seeded.providers[("m1", "acme")]
    for call in (
        lambda: queries.overview(seeded.store),
        lambda: queries.provider_history(seeded.store, pair_id),
    ):
        for plan in _plans(seeded.store, call):
            assert not any(line.startswith("SCAN f") for line in plan), plan  # findings
            assert not any(line.startswith("SCAN samples") for line in plan), plan
    overview = max(_plans(seeded.store, lambda: queries.overview(seeded.store)), key=len)
    assert sum("ix_findings_pair_" in line for line in overview) >= 5, overview


def test_sample_pagination_survives_new_rows(fresh: Seeded) -> None:
    """Keyset, not offset: a sample stored between two pages neither repeats a row nor
    skips one."""
    seeded = fresh
    first = queries.samples(seeded.store, limit=10)
    case = ProbeCase(id="p-a", suite="core", messages=[Message(role="user", content="say p-a")])
    add_sample(seeded.store, RUNNING, seeded.providers[("m1", "acme")], "m1", "acme", case, 9, 5, 0)
    rest = _all_samples(seeded.store, limit=500, start=first.next_cursor)
    assert [s.id for s in first.items] + rest == sorted(
        (f.id for f in seeded.samples), reverse=True
    )


def test_sample_detail_has_payloads_the_list_has_not(seeded: Seeded) -> None:
    fact = next(f for f in seeded.samples if f.ok and f.provider == "bolt")
    detail = queries.sample(seeded.store, fact.id)
    assert detail is not None
    assert detail.request_json["model"] == fact.model
    assert detail.response_json == {"choices": [{"message": {"content": "x"}}]}
    assert detail.latency_ms == pytest.approx(fact.latency_ms)
    assert detail.cost == pytest.approx(fact.cost) and detail.total_tokens == fact.tokens
    listed = queries.samples(seeded.store, round_id=fact.round_id, limit=500).items
    row = next(s for s in listed if s.id == fact.id)
    assert "request_json" not in row.model_dump() and row.output_text == detail.output_text
    failed = next(f for f in seeded.samples if f.error_class == "connect_error")
    detail = queries.sample(seeded.store, failed.id)
    assert detail is not None and detail.response_json is None and detail.latency_ms is None
    assert detail.error_message == "connect_error after retries"
    assert queries.sample(seeded.store, 10**9) is None
    assert queries.sample(seeded.store, 2**40) is None


# --- cursors --------------------------------------------------------------------------------


def _b64(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


GARBAGE = [
    "garbage!",
    "%%%",
    "",
    _b64({"id": 3}),
    _b64(["samples"]),
    _b64(["samples", "3"]),
    _b64(["samples", 2**70]),
    _b64(["samples", 2**31 + 1]),
    _b64(["samples", -1]),
    _b64(["samples", True]),
    _b64(["rounds", "not a time", "r-a"]),
    _b64(["rounds", "0001-01-01T00:00:00+05:00", "r-a"]),
    _b64(["findings", "2025-03-01T12:00:00+00:00", "r-a"]),
]


@pytest.mark.parametrize("cursor", GARBAGE)
def test_a_garbage_cursor_is_a_value_error(sqlite_url: str, cursor: str) -> None:
    store = new_store(sqlite_url)
    with pytest.raises(ValueError):
        queries.samples(store, cursor=cursor)
    with pytest.raises(ValueError):
        queries.rounds(store, cursor=cursor)
    with pytest.raises(ValueError):
        queries.findings(store, cursor=cursor)


def test_a_cursor_of_one_list_is_refused_by_another(seeded: Seeded) -> None:
    rounds_cursor = queries.rounds(seeded.store, limit=1).next_cursor
    samples_cursor = queries.samples(seeded.store, limit=1).next_cursor
    findings_cursor = queries.findings(seeded.store, limit=1).next_cursor
    assert rounds_cursor and samples_cursor and findings_cursor
    with pytest.raises(ValueError):
        queries.findings(seeded.store, cursor=rounds_cursor)
    with pytest.raises(ValueError):
        queries.rounds(seeded.store, cursor=samples_cursor)
    with pytest.raises(ValueError):
        queries.samples(seeded.store, cursor=findings_cursor)


def test_times_are_utc(seeded: Seeded) -> None:
    detail = queries.round_detail(seeded.store, "r-a")
    assert detail is not None and detail.round.started_at.tzinfo is not None
    assert as_utc(detail.round.started_at) == seeded.starts["r-a"]
