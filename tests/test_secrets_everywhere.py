"""No secret value reaches anything the auditor writes: the database, the logs, the reports,
the exports, the evidence bundles, the outbox and the webhook bodies.

The secrets are a provider key (`api_key_env`), a provider header (`${TEAM_TOKEN}`) and a
webhook sink secret, set to unique values. The providers are careless on purpose: one puts
the key and the header it received in its answers (the text, a response header, stream
chunks), one quotes the key in its 401 errors, and the webhook receiver quotes the signature
and its secret in a 500 page. Two rounds (the second real `auditor run` with debug JSON logs)
make `acme` deviant against its own history, so its finding carries evidence (its answers,
with the echoed key) and opens an incident; the incident's alert goes through the outbox to
the real receiver, as does `auditor alerts test`. Then every output, every file in the
directory (the Parquet export's files decoded, value by value), every text or JSON column of
the database, every frame of `auditor.results` and every page and API answer of the dashboard
(behind its bearer token, itself a secret; each round's Parquet download decoded) is searched
for the values.

test_crash_and_secrets.py has the quicker first version of this test (one round, no webhook).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml
from helpers.cli import provider, run_auditor, write_config
from helpers.exports import parquet_text
from helpers.openai import chunk, completion, sse
from helpers.servers import LoopbackProvider, QuietHandler, RecordingProvider
from helpers.zygote import Zygote

from auditor import results
from auditor.alerts import delivery, outbox
from auditor.alerts.incidents import update_from_findings
from auditor.cli.common import open_store
from auditor.config import load_config
from auditor.operations.settings import ServerConfig
from auditor.storage.db import make_engine
from auditor.storage.repository import Store
from auditor.web.dashboard import create_dashboard
from auditor.web.server import WebServer
from tests.alerts.receiver import Receiver, Reply, sink

pytestmark = pytest.mark.slow  # two rounds, a webhook and the dashboard, on both databases

CITIES = ["Paris", "Rome", "Madrid", "Berlin", "Vienna", "Lisbon", "Dublin", "Oslo", "Bern",
          "Prague", "Warsaw", "Athens"]  # fmt: skip
SUITE = {
    "suite": "capitals",
    "defaults": {"params": {"temperature": 0, "max_tokens": 16}},
    "cases": [
        {
            "id": f"capital-{i}",
            "prompt": f"Capital number {i}? One word.",
            "expect": {"exact": city},
        }
        for i, city in enumerate(CITIES)
    ],
}


class EchoingProvider(LoopbackProvider):
    """Answers the capitals right; once `careless` is set, answers wrong, quoting the
    Authorization and X-Team headers it received in the text and in `x-request-id`, as a
    stream when asked for one."""

    def __init__(self) -> None:
        self.careless = False
        self.seen: list[dict[str, str]] = []
        outer = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = json.loads(self.body())
                headers = self.lower_headers()
                outer.seen.append(headers)
                prompt = body["messages"][-1]["content"]
                number = int(prompt.split()[2].rstrip("?"))
                text = CITIES[number]
                if outer.careless:
                    text = (
                        f"I would rather not. Debug: authorization={headers.get('authorization')}"
                        f" team={headers.get('x-team')}"
                    )
                usage = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}
                if body.get("stream"):
                    data = sse(chunk(text), chunk(finish="stop", usage=usage))
                    content_type = "text/event-stream"
                else:
                    data = json.dumps(completion(text, usage=usage)).encode()
                    content_type = "application/json"
                echoed = {"x-request-id": headers.get("authorization", "")}
                self.reply(200, data, content_type, echoed if outer.careless else None)

        self.serve(Handler)


def secrets() -> dict[str, str]:
    raw = os.urandom(24)
    hook = "whsec_" + base64.b64encode(raw).decode()
    return {
        "AUDITOR_TEST_KEY": "sk-audit-" + os.urandom(10).hex(),
        "TEAM_TOKEN": "tok-" + os.urandom(10).hex(),
        "HOOK_SECRET": hook,
        "AUDITOR_WEB_TOKEN": "web-" + os.urandom(10).hex(),
    }


def forbidden(env: dict[str, str]) -> list[str]:
    """The values, and the parts of them that are secret on their own."""
    hook = env["HOOK_SECRET"]
    return [
        env["AUDITOR_TEST_KEY"],
        env["TEAM_TOKEN"],
        hook,
        hook.removeprefix("whsec_"),
        env["AUDITOR_WEB_TOKEN"],
    ]


def dashboard_texts(db_url: str, token: str) -> dict[str, str]:
    """Every page and API answer of the dashboard over the database, served for real with
    the bearer token: the overview, each round, provider, finding and sample."""

    async def crawl() -> dict[str, str]:
        engine = make_engine(db_url)
        app = create_dashboard(Store(engine), token=token)
        texts: dict[str, str] = {}
        auth = {"Authorization": f"Bearer {token}"}
        async with (
            WebServer(app, ServerConfig(port=0)) as server,
            httpx.AsyncClient(base_url=server.url, headers=auth, trust_env=False) as client,
        ):

            async def get(path: str) -> Any:
                answer = await client.get(path)
                assert answer.status_code == 200, (path, answer.text[:200])
                if path.endswith(".parquet"):
                    texts[path] = parquet_text(answer.content)
                    return None
                texts[path] = answer.text
                return answer.json() if path.startswith("/api/") else None

            for path in ("/", "/rounds", "/metrics", "/api/openapi.json", "/api/incidents"):
                await get(path)
            rounds = (await get("/api/rounds"))["items"]
            for r in rounds:
                await get(f"/rounds/{r['id']}")
                await get(f"/api/rounds/{r['id']}")
                await get(f"/api/rounds/{r['id']}/report")
                await get(f"/api/rounds/{r['id']}/samples.parquet")
            for p in await get("/api/providers"):
                await get(f"/providers/{p['id']}")
                await get(f"/api/providers/{p['id']}")
            for f in (await get("/api/findings?limit=500"))["items"]:
                await get(f"/findings/{f['id']}")
                await get(f"/api/findings/{f['id']}")
            for sample in (await get("/api/samples?limit=500"))["items"]:
                await get(f"/api/samples/{sample['id']}")
        engine.dispose()
        assert rounds and any("/findings/" in k for k in texts)
        return texts

    return {f"dashboard {k}": v for k, v in asyncio.run(crawl()).items()}


def database_text(url: str) -> str:
    """Every text and JSON column of every table, as text."""
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            tables = [
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            ]
            return "\n".join(
                repr(row) for t in tables for row in conn.execute(f'SELECT * FROM "{t}"')
            )
    dsn = url.replace("postgresql+psycopg", "postgresql")
    parts: list[str] = []
    with psycopg.connect(dsn) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND data_type IN "
            "('text', 'character varying', 'json', 'jsonb', 'ARRAY')"
        ).fetchall()
        assert columns
        for table, column in columns:
            rows = conn.execute(f'SELECT "{column}"::text FROM "{table}"').fetchall()
            parts += [r[0] for r in rows if r[0] is not None]
    return "\n".join(parts)


def test_no_secret_reaches_any_output(
    tmp_path: Path, db_url: str, zygote: Zygote, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = secrets()
    debug = {**env, "AUDITOR_LOG_LEVEL": "debug", "AUDITOR_LOG_FORMAT": "json"}
    probes = tmp_path / "probes"
    probes.mkdir()
    (probes / "capitals.yaml").write_text(yaml.safe_dump(SUITE))
    receiver = Receiver([env["HOOK_SECRET"]]).start()
    echo = EchoingProvider().start()
    outputs: dict[str, str] = {}

    def command(name: str, *argv: str, code: int = 0) -> str:
        exit_code, output = zygote.command([*argv, "-c", str(config)], tmp_path, debug)
        assert exit_code == code, (name, output)
        outputs[name] = output
        return output

    try:
        with RecordingProvider(echo_key=True) as leaky:
            keyed = {"api_key_env": "AUDITOR_TEST_KEY", "headers": {"X-Team": "${TEAM_TOKEN}"}}
            providers = [
                provider("acme", echo.base_url, **keyed),
                provider("acme-stream", echo.base_url, **keyed, stream=True),
                provider("leaky", leaky.base_url, api_key_env="AUDITOR_TEST_KEY"),
            ]
            ops = sink("ops", receiver.url, timeout_s=5)
            config = write_config(
                tmp_path,
                providers,
                db_url,
                suites=["capitals"],
                probes_dir="probes",
                extra={"alerts": {"sinks": [ops]}},
            )
            command("round 1", "run", "--no-progress")
            echo.careless = True
            # The second round is the real console script, its debug JSON logs captured.
            run = run_auditor("run", "-c", str(config), "--no-progress", cwd=tmp_path, env=debug)
            assert run.returncode == 0, run.stderr
            outputs["round 2"] = run.stdout + run.stderr
        # The secrets really were sent, and echoed: the test would prove nothing otherwise.
        assert echo.seen[-1]["authorization"] == f"Bearer {env['AUDITOR_TEST_KEY']}"
        assert echo.seen[-1]["x-team"] == env["TEAM_TOKEN"]
        assert '"sample.stored"' in outputs["round 2"]

        report = json.loads(command("report json", "report", "--format", "json"))
        verdicts = {f["provider"]: f["verdict"] for f in report["findings"]}
        assert verdicts["acme"] == "deviant" and verdicts["leaky"] == "unavailable", verdicts
        command("report markdown", "report", "--format", "markdown")
        command("report table", "report")
        command("compare", "compare")
        command("export jsonl", "export", "--format", "jsonl")
        command("export csv", "export", "--format", "csv")
        command("export file", "export", "--format", "jsonl", "-o", str(tmp_path / "s.jsonl"))
        command("export parquet", "export", "--format", "parquet", "-o", str(tmp_path / "pq"))
        command("evidence", "export", "--evidence", "-o", str(tmp_path / "evidence.json"))
        command("evidence leaky", "export", "--evidence", "--provider", "leaky")
        bundle = json.loads((tmp_path / "evidence.json").read_text())
        assert "[REDACTED]" in json.dumps(bundle), "the echoed key is in the evidence, redacted"

        # A webhook receiver that quotes the secret in its error page, then the incidents'
        # alerts through the outbox, as the daemon sends them.
        receiver.script(Reply(500, echo=True))
        command("alerts test", "alerts", "test", code=1)
        command("alerts list", "alerts", "list")
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        store = open_store(db_url)
        loaded = load_config(config)
        events = update_from_findings(
            store, report["round"]["id"], store.findings(report["round"]["id"])
        )
        opened_for = {e.incident.provider for e in events if e.incident}
        assert opened_for == {"acme", "acme-stream", "leaky"}
        for event in events:
            outbox.enqueue(store, event, loaded.alerts)

        async def send() -> dict[str, int]:
            async with httpx.AsyncClient() as client:
                return await delivery.deliver_due(store, loaded.alerts, client)

        assert asyncio.run(send()) == {"delivered": len(events)}
        store.engine.dispose()
        command("incidents", "incidents", "list")
        command("alerts list after", "alerts", "list")
    finally:
        receiver.stop()
        echo.stop()

    bodies = [r.body.decode() for r in receiver.requests]
    assert len(bodies) == 1 + len(opened_for) and all(r.verified for r in receiver.requests)
    opened = [json.loads(b) for b in bodies if '"incident.opened"' in b]
    evidence = json.dumps([o["data"]["evidence"] for o in opened])
    assert "[REDACTED]" in evidence, "the alert's evidence holds the echoed key, redacted"

    texts = {**outputs, **{f"webhook {i}": b for i, b in enumerate(bodies)}}
    texts["database"] = database_text(db_url)
    texts |= dashboard_texts(db_url, env["AUDITOR_WEB_TOKEN"])
    assert any("[REDACTED]" in t for k, t in texts.items() if k.startswith("dashboard /api/sam"))
    with results.open(db_url) as api:
        frames = [api.samples(), api.findings(), api.tests(), api.diagnoses()]
    texts["auditor.results"] = "\n".join(
        f.to_json(orient="records", date_format="iso") for f in frames
    )
    assert "[REDACTED]" in texts["auditor.results"], "the echoed key is in the answers, redacted"
    exported = sorted(tmp_path.glob("pq/*/day=*/model=*/*.parquet"))
    assert {p.parts[-4] for p in exported} == {"samples", "findings", "tests", "diagnoses"}
    for path in tmp_path.rglob("*"):
        if path.suffix == ".parquet":  # compressed: every value decoded
            texts[f"file {path}"] = parquet_text(path)
        elif path.is_file():
            texts[f"file {path.name}"] = path.read_bytes().decode("utf-8", "replace")
    assert any("[REDACTED]" in texts[f"file {p}"] for p in exported)
    leaks = [
        (name, value[:12])
        for name, text in texts.items()
        for value in forbidden(env)
        if value in text
    ]
    assert not leaks
    assert "[REDACTED]" in texts["database"]
