"""The JSON API over the results database: read-only, documented by its OpenAPI schema.

The dashboard mounts it at `/api` (`Mount("/api", app=create_api(store))`): the schema is
served at `/api/openapi.json`, with `servers: [{"url": "/api"}]` taken from the mount's root
path so that clients generated from it resolve the paths under `/api`, and a reference page
at `/api/docs`. The page is rendered here from the schema, with no script: FastAPI's own
Swagger UI and ReDoc pages load their code from a CDN, and nothing the dashboard serves may
fetch from beyond this host.

Handlers are plain `def`: FastAPI runs them in its thread pool, since every query blocks.
"""

from __future__ import annotations

import html
import os
import re
import tempfile
from typing import Annotated, Any, Literal, TypeVar

import structlog
from fastapi import FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.responses import JSONResponse as FastAPIJSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import OperationalError
from starlette.background import BackgroundTask

from auditor import __version__
from auditor.records import ErrorClass, IncidentInfo, Verdict
from auditor.report.render import Report, _no_nan, build_report, to_json
from auditor.storage.repository import Store
from auditor.web import queries
from auditor.web.views import (
    FindingDetail,
    Overview,
    Page,
    ProviderHistory,
    ProviderInfo,
    RoundDetail,
    RoundSummary,
    SampleDetail,
    SampleView,
)

MAX_TEXT = 256  # filters longer than any stored name or id
PARQUET = "application/vnd.apache.parquet"  # auditor.report.parquet.MEDIA_TYPE (pyarrow: lazily)

log = structlog.get_logger(__name__)


class JSONResponse(FastAPIJSONResponse):
    """JSON as the report contract writes it: NaN and infinities (a statistic on SQLite can
    be one) become null instead of failing the response."""

    def render(self, content: Any) -> bytes:
        return super().render(_no_nan(content))


class ErrorBody(BaseModel):
    """What every error answers."""

    detail: str


T = TypeVar("T")


def _found(row: T | None, what: str, key: object) -> T:
    """The row a query found; a 404 naming what was asked for when it found none."""
    if row is None:
        raise HTTPException(status_code=404, detail=f"no {what} {key!r}")
    return row


NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such row."}
}
BAD_CURSOR: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "The cursor is not one this list gave."}
}

# Text filters match stored names and ids exactly: printable, no NUL (which PostgreSQL
# refuses in a query), bounded.
_TEXT = r"^[^\x00-\x1f\x7f]*$"
Limit = Annotated[int, Query(ge=1, le=queries.MAX_LIMIT, description="Rows per page (1-500).")]
Cursor = Annotated[
    str | None,
    Query(
        max_length=MAX_TEXT,
        pattern=r"^[A-Za-z0-9_-]*$",
        description="`next_cursor` of the previous page; omit for the first page.",
    ),
]


RoundId = Annotated[str, Path(max_length=MAX_TEXT, pattern=_TEXT, description="Round id.")]


def _text(description: str) -> Any:
    return Query(max_length=MAX_TEXT, pattern=_TEXT, description=description)


def _id(description: str) -> Any:
    return Path(ge=1, le=queries.MAX_ID, description=description)


def create_api(store: Store) -> FastAPI:
    """The API over `store`, to mount (at `/api`) in the dashboard or serve on its own."""
    api = FastAPI(
        title="Provider auditor API",
        version=__version__,
        description=(
            "Read-only access to the auditor's results database: the latest verdict of every "
            "provider, rounds and their reports, findings with their tests and evidence, "
            "provider histories, stored samples and incidents. Lists are keyset-paginated: "
            "pass a page's `next_cursor` as `cursor` to get the next one (null: last page). "
            'Times are UTC. Errors answer `{"detail": ...}`.'
        ),
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        default_response_class=JSONResponse,
    )

    @api.exception_handler(queries.BadCursor)
    async def bad_cursor(_request: Request, exc: queries.BadCursor) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @api.exception_handler(OperationalError)
    async def database_down(_request: Request, exc: OperationalError) -> JSONResponse:
        # The driver's message names the host and port, never a password; it stays in the log.
        log.warning("api.database_unavailable", error=str(exc.orig).strip()[:300])
        return JSONResponse({"detail": "the database did not answer"}, status_code=503)

    @api.exception_handler(Exception)
    async def internal_error(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"internal error ({type(exc).__name__})"}, 500)

    @api.get(
        "/overview",
        response_model=Overview,
        tags=["overview"],
        summary="Every provider's latest verdict",
    )
    def get_overview() -> Overview:
        """The models x providers grid: each provider's latest finding, when its current run
        of that verdict began (`since`) and its open incident; all open incidents; the last
        round."""
        return queries.overview(store)

    @api.get(
        "/rounds",
        response_model=Page[RoundSummary],
        responses=BAD_CURSOR,
        tags=["rounds"],
        summary="Rounds, newest first",
    )
    def get_rounds(limit: Limit = 50, cursor: Cursor = None) -> Page[RoundSummary]:
        """What each round ran and found: requests and errors of its providers, and how many
        providers got each verdict."""
        return queries.rounds(store, limit=limit, cursor=cursor)

    @api.get(
        "/rounds/latest/report",
        response_model=Report,
        responses=NOT_FOUND,
        tags=["rounds"],
        summary="The last round's report",
    )
    def get_latest_report() -> Response:
        """`auditor report --format json` of the most recent round."""
        row = store.last_round()
        if row is None:
            raise HTTPException(status_code=404, detail="no rounds yet")
        return _report(row)

    @api.get(
        "/rounds/{round_id}",
        response_model=RoundDetail,
        responses=NOT_FOUND,
        tags=["rounds"],
        summary="One round",
    )
    def get_round(
        round_id: RoundId,
    ) -> RoundDetail:
        """The round, its findings, and requests, errors, tokens, cost and latency per
        endpoint (the reference included)."""
        return _found(queries.round_detail(store, round_id), "round", round_id)

    @api.get(
        "/rounds/{round_id}/report",
        response_model=Report,
        responses=NOT_FOUND,
        tags=["rounds"],
        summary="A round's report",
    )
    def get_report(
        round_id: RoundId,
    ) -> Response:
        """Exactly `auditor report --round ID --format json`: the report JSON contract (NaN
        and infinities as null)."""
        row = _found(store.get_round(round_id), "round", round_id)
        return _report(row)

    def _report(row: Any) -> Response:
        return Response(to_json(build_report(store, row)), media_type="application/json")

    @api.get(
        "/rounds/{round_id}/samples.parquet",
        response_class=FileResponse,
        responses={
            200: {
                "description": "One Parquet file: the samples table of the export schema.",
                "content": {PARQUET: {"schema": {"type": "string", "format": "binary"}}},
            },
            **NOT_FOUND,
        },
        tags=["rounds"],
        summary="A round's samples as Parquet",
    )
    def get_round_samples(round_id: RoundId) -> FileResponse:
        """Every sample of the round (every endpoint's, the reference included) with its
        scores pivoted to one `score_<metric>` column per metric: the samples table of
        `auditor export --format parquet` (schema in docs/research.md), as one file."""
        from auditor.report.parquet import write_round_samples

        _found(store.get_round(round_id), "round", round_id)
        fd, name = tempfile.mkstemp(prefix="auditor-round-", suffix=".parquet")
        try:
            with os.fdopen(fd, "wb") as f:
                write_round_samples(store, round_id, f)
        except BaseException:
            os.unlink(name)
            raise
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", round_id)
        return FileResponse(
            name,
            media_type=PARQUET,
            filename=f"round-{safe}-samples.parquet",
            background=BackgroundTask(os.unlink, name),
        )

    @api.get(
        "/findings",
        response_model=Page[FindingDetail],
        responses=BAD_CURSOR,
        tags=["findings"],
        summary="Findings, newest first",
    )
    def get_findings(
        model: Annotated[str | None, _text("Only this model.")] = None,
        provider: Annotated[str | None, _text("Only this provider (by name).")] = None,
        verdict: Annotated[Verdict | None, Query(description="Only this verdict.")] = None,
        round_id: Annotated[str | None, _text("Only this round.")] = None,
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> Page[FindingDetail]:
        """Findings ordered by their round's start (a recomputed old round stays old), each
        as in the report contract with its round."""
        return queries.findings(
            store,
            model=model,
            provider=provider,
            verdict=verdict,
            round_id=round_id,
            limit=limit,
            cursor=cursor,
        )

    @api.get(
        "/findings/{finding_id}",
        response_model=FindingDetail,
        responses=NOT_FOUND,
        tags=["findings"],
        summary="One finding",
    )
    def get_finding(finding_id: Annotated[int, _id("Finding id.")]) -> FindingDetail:
        """A finding with its tests, diagnoses and evidence, its context window, upstreams
        and capability table where it has them, its round, and the provider's id (for
        `/providers/{id}`)."""
        return _found(queries.finding(store, finding_id), "finding", finding_id)

    @api.get(
        "/providers",
        response_model=list[ProviderInfo],
        tags=["providers"],
        summary="Providers and references",
    )
    def get_providers(
        kind: Annotated[
            Literal["provider", "reference"] | None, Query(description="Only this kind.")
        ] = None,
    ) -> list[ProviderInfo]:
        """Every endpoint the auditor has audited, by model: name, base URL (without
        credentials or query), model id and whether it is trusted. Never its configuration."""
        return queries.providers(store, kind=kind)

    @api.get(
        "/providers/{provider_id}",
        response_model=ProviderHistory,
        responses=NOT_FOUND,
        tags=["providers"],
        summary="A provider's history",
    )
    def get_provider(
        provider_id: Annotated[int, _id("Provider id.")],
        limit: Annotated[
            int, Query(ge=1, le=queries.MAX_LIMIT, description="Rounds shown (1-500).")
        ] = 200,
    ) -> ProviderHistory:
        """The provider's last `limit` assessed rounds, oldest first: verdict, requests,
        errors, tokens, cost and mean latency per round; each test's statistic, p-value and
        honest band over time; its incidents. Of those rounds, the latest that ran a context
        ladder gives `context_window`, the latest that probed request parameters gives
        `capabilities` (its capability table) and the latest where a router named upstreams
        gives `upstreams` (the answers, errors and answers off the pin of each), each with
        its round and finding (null: none did)."""
        return _found(
            queries.provider_history(store, provider_id, limit=limit), "provider", provider_id
        )

    @api.get(
        "/samples",
        response_model=Page[SampleView],
        responses=BAD_CURSOR,
        tags=["samples"],
        summary="Stored exchanges, newest first",
    )
    def get_samples(
        round_id: Annotated[str | None, _text("Only this round.")] = None,
        model: Annotated[str | None, _text("Only this model.")] = None,
        provider: Annotated[str | None, _text("Only this provider (or `reference`).")] = None,
        probe_id: Annotated[str | None, _text("Only this probe.")] = None,
        ok: Annotated[bool | None, Query(description="Only answered (or failed) ones.")] = None,
        error_class: Annotated[
            ErrorClass | None, Query(description="Only failures of this class.")
        ] = None,
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> Page[SampleView]:
        """Samples without their raw payloads (see `/samples/{id}`), each with the reasoning
        returned beside its answer (`reasoning_text`, the field it came in,
        `reasoning_source`, and `reasoning_tokens`) and the upstream a router named
        (`upstream`). Filtered on `ok` or
        `error_class` outside a round, a page reads a bounded stretch of samples (no index
        serves those filters) and may come back short, even empty, with a `next_cursor`:
        follow it to the end."""
        return queries.samples(
            store,
            round_id=round_id,
            model=model,
            provider=provider,
            probe_id=probe_id,
            ok=ok,
            error_class=error_class.value if error_class else None,
            limit=limit,
            cursor=cursor,
        )

    @api.get(
        "/samples/{sample_id}",
        response_model=SampleDetail,
        responses=NOT_FOUND,
        tags=["samples"],
        summary="One stored exchange",
    )
    def get_sample(sample_id: Annotated[int, _id("Sample id.")]) -> SampleDetail:
        """A sample with the request body sent and the response body received (secrets
        were scrubbed before they were stored)."""
        return _found(queries.sample(store, sample_id), "sample", sample_id)

    @api.get(
        "/incidents",
        response_model=list[IncidentInfo],
        tags=["incidents"],
        summary="Incidents, newest first",
    )
    def get_incidents(
        state: Annotated[
            Literal["open", "resolved"] | None, Query(description="Only this state.")
        ] = None,
        limit: Annotated[
            int, Query(ge=1, le=queries.MAX_LIMIT, description="At most this many (1-500).")
        ] = 100,
    ) -> list[IncidentInfo]:
        """Incidents the daemon opened: a provider turned deviant or unavailable, or a
        suite's rounds went stale."""
        return queries.incidents(store, state=state, limit=limit)

    @api.get("/docs", include_in_schema=False, response_class=HTMLResponse)
    def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return HTMLResponse(docs_page(api.openapi(), root))

    return api


def docs_page(schema: dict[str, Any], root: str) -> str:
    """A plain HTML reference of the API from its OpenAPI schema: each operation with its
    summary, description, parameters and responses. No script, nothing fetched."""
    e = html.escape
    info = schema.get("info", {})
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>{e(info.get('title', 'API'))}</title>",
        "<style>body{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;"
        "padding:0 1rem}code{background:#f3f3f3;padding:0 .2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left;vertical-align:top}"
        "h2{margin-top:2rem;border-top:1px solid #ddd;padding-top:1rem}</style></head><body>",
        f"<h1>{e(info.get('title', 'API'))} <small>{e(info.get('version', ''))}</small></h1>",
        f"<p>{e(info.get('description', ''))}</p>",
        f'<p>Schema: <a href="{e(root)}/openapi.json"><code>{e(root)}/openapi.json</code></a> '
        "(OpenAPI 3)</p>",
    ]
    for path, operations in schema.get("paths", {}).items():
        for method, op in operations.items():
            parts.append(
                f"<h2><code>{e(method.upper())} {e(root + path)}</code></h2>"
                f"<p><b>{e(op.get('summary', ''))}</b></p><p>{e(op.get('description', ''))}</p>"
            )
            params = op.get("parameters", [])
            if params:
                parts.append("<table><tr><th>parameter</th><th>in</th><th>description</th></tr>")
                parts += [
                    f"<tr><td><code>{e(p['name'])}</code></td><td>{e(p.get('in', ''))}</td>"
                    f"<td>{e(p.get('description', ''))}</td></tr>"
                    for p in params
                ]
                parts.append("</table>")
            codes = ", ".join(
                f"{e(code)} {e(r.get('description', ''))}"
                for code, r in op.get("responses", {}).items()
            )
            parts.append(f"<p>Responses: {codes}</p>")
    parts.append("</body></html>")
    return "".join(parts)
