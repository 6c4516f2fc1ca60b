"""Fixtures of the dashboard's end-to-end tests: a results database filled once per test session
by a real demo round, and the dashboard app serving it over loopback with the real uvicorn
server.

The round is `auditor demo` run through the console script in a subprocess, restricted with
`--faults` to a few members of the demo fleet (real OpenAI-compatible HTTP servers on
127.0.0.1 backed by the packaged model, with planted faults) and the embedded reference
model, writing into a temporary SQLite database. The members: the two honest ones (`trusted`:
their noise is the honest band) and two faults the demo suite exposes in a single look: a
hidden persona system prompt (ember: every request billed more prompt tokens, the tone moved)
and the temperature forced to 1 (cobalt). About 100 s on 2 cores; tests/fleet/test_demo.py
runs only the model-free echo fleet, so there is no round to share with it.

`AUDITOR_TEST_DEMO_DB=/path/demo.db` reuses the database of an earlier session (its path is
printed when the round is run) instead of running the round again: for iterating on the
tests, not for CI.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from auditor_fleet import default_fleet, pick_members
from auditor_fleet.demo import providers_yaml
from helpers.cli import ROOT, free_port_range, run_auditor
from helpers.servers import BackgroundServer
from sqlalchemy import select
from starlette.applications import Starlette

from auditor.storage.db import make_engine
from auditor.storage.repository import Store
from auditor.storage.tables import FindingRow, ProviderRow
from auditor.web.dashboard import create_dashboard

DEMO_MEMBERS = ("acme", "bolt", "cobalt", "ember")
DEMO_TIMEOUT_S = 900.0
ARTIFACTS = ROOT / "tests" / "artifacts"


@dataclass(frozen=True)
class DemoFinding:
    id: int
    model: str
    provider: str
    provider_id: int
    verdict: str
    evidence: list[dict[str, Any]]


@dataclass(frozen=True)
class DemoRound:
    """The demo round in the database, as the tests expect to see it on the pages."""

    url: str
    round_id: str
    findings: dict[str, DemoFinding]  # provider name -> its finding in the round
    providers: dict[str, int]  # provider name -> id, the reference included
    seconds: float  # how long filling the database took (0: reused)

    def verdicts(self) -> dict[str, str]:
        return {name: f.verdict for name, f in self.findings.items()}


def run_demo_round(directory: Path) -> str:
    """`auditor demo` with a few fleet members into a SQLite database in `directory`; its URL."""
    fleet_size = len(default_fleet().members)
    base = free_port_range(fleet_size)
    fleet = pick_members(default_fleet(base), list(DEMO_MEMBERS))
    url = f"sqlite:///{directory / 'demo.db'}"
    config = yaml.safe_load(providers_yaml(fleet, url))
    config["probes_dir"] = str(ROOT / "probes")
    config_path = directory / "providers.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    result = run_auditor(
        "demo",
        "--config",
        str(config_path),
        "--faults",
        ",".join(DEMO_MEMBERS),
        "--base-port",
        str(base),
        "--state-dir",
        str(directory / "fleet"),
        "--no-progress",
        cwd=directory,
        timeout=DEMO_TIMEOUT_S,
    )
    if result.returncode != 0:
        pytest.fail(
            f"auditor demo exited {result.returncode}\n--- stderr\n{result.stderr[-4000:]}"
            f"\n--- stdout\n{result.stdout[-4000:]}"
        )
    (directory / "demo-stdout.txt").write_text(result.stdout, encoding="utf-8")
    return url


def read_round(url: str, seconds: float) -> DemoRound:
    """What the database holds about its last round: the expectations of the tests."""
    store = Store(make_engine(url))
    try:
        last = store.last_round()
        assert last is not None, f"no round in {url}"
        with store.session() as s:
            providers = {
                (p.model, p.name): p.id
                for p in s.execute(select(ProviderRow)).scalars()
                if p.id is not None
            }
            rows = s.execute(select(FindingRow).where(FindingRow.round_id == last.id)).scalars()
            findings = {
                r.provider: DemoFinding(
                    id=r.id or 0,
                    model=r.model,
                    provider=r.provider,
                    provider_id=providers[(r.model, r.provider)],
                    verdict=r.verdict,
                    evidence=list(r.evidence or []),
                )
                for r in rows
            }
    finally:
        store.engine.dispose()
    return DemoRound(
        url=url,
        round_id=last.id,
        findings=findings,
        providers={name: pid for (_, name), pid in providers.items()},
        seconds=seconds,
    )


@pytest.fixture(scope="session")
def demo_round(tmp_path_factory: pytest.TempPathFactory) -> DemoRound:
    """The database of one real demo round, filled once per test session."""
    reused = os.environ.get("AUDITOR_TEST_DEMO_DB")
    if reused:
        return read_round(f"sqlite:///{Path(reused).resolve()}", 0.0)
    directory = tmp_path_factory.mktemp("demo-round")
    t0 = time.monotonic()
    url = run_demo_round(directory)
    seconds = time.monotonic() - t0
    print(f"\ndemo round for the dashboard tests: {url} in {seconds:.0f} s", file=sys.stderr)
    return read_round(url, seconds)


def dashboard_app(store: Store) -> Starlette:
    """The dashboard as `auditor serve` serves it (open access: it listens on loopback)."""
    return create_dashboard(store)


@pytest.fixture(scope="session")
def dashboard(demo_round: DemoRound) -> Iterator[str]:
    """The base URL (http://127.0.0.1:PORT) of the dashboard serving the demo round."""
    store = Store(make_engine(demo_round.url))
    try:
        with BackgroundServer(dashboard_app(store)) as server:
            yield server.url
    finally:
        store.engine.dispose()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where screenshots go (CI keeps them): tests/artifacts/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
