"""`auditor run`, `report`, `export`, `compare` through the console script, against real
local HTTP providers (the demo fleet) and real databases."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
from auditor_fleet import FleetMember, FleetSpec, running_fleet
from auditor_fleet.process import FleetHandle
from helpers.cli import (
    MINI_REQUESTS,
    ROOT,
    endpoint_reference,
    provider,
    run_auditor,
    write_config,
)

pytestmark = pytest.mark.slow  # each test runs rounds through the console script against a fleet

# The report JSON contract of DESIGN.md, as a JSON Schema (null allowed, never NaN).
NUM = {"type": ["number", "null"]}
REPORT_CONTRACT = {
    "type": "object",
    "required": ["version", "round", "findings"],
    "properties": {
        "version": {"type": "string"},
        "round": {
            "type": "object",
            "required": [
                "id",
                "suite",
                "suite_hash",
                "started_at",
                "finished_at",
                "status",
                "complete",
            ],
            "properties": {
                "id": {"type": "string"},
                "suite": {"type": "string"},
                "suite_hash": {"type": "string"},
                "started_at": {"type": "string", "format": "date-time"},
                "finished_at": {"type": ["string", "null"], "format": "date-time"},
                "status": {"enum": ["running", "interrupted", "complete"]},
                "complete": {"type": "boolean"},
            },
        },
        "findings": {
            "type": "array",
            "items": {
                "type": "object",
                "required": [
                    "model",
                    "provider",
                    "baseline",
                    "verdict",
                    "severity",
                    "diagnoses",
                    "tests",
                    "evidence",
                    "requests",
                    "errors",
                    "tokens",
                ],
                "properties": {
                    "baseline": {"enum": ["reference", "history"]},
                    "verdict": {"enum": ["consistent", "deviant", "unavailable", "inconclusive"]},
                    "severity": {"enum": ["info", "warning", "critical"]},
                    "diagnoses": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["kind", "confidence", "summary"],
                            "properties": {
                                "confidence": {"type": "number", "minimum": 0, "maximum": 1}
                            },
                        },
                    },
                    "tests": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": [
                                "name",
                                "statistic",
                                "p_value",
                                "effect",
                                "honest_range",
                                "n",
                            ],
                            "properties": {"statistic": NUM, "p_value": NUM, "effect": NUM},
                        },
                    },
                    "evidence": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["probe", "reference", "provider", "note"],
                        },
                    },
                    "requests": {"type": "integer"},
                    "errors": {"type": "integer"},
                    "tokens": {"type": "integer"},
                },
            },
        },
    },
}


@pytest.fixture(scope="module")
def fleet() -> Iterator[FleetHandle]:
    spec = FleetSpec(
        members=[
            FleetMember(name="acme", port=0),
            FleetMember(name="bolt", port=0),
            FleetMember(name="denied", port=0, fault="http_401"),
            FleetMember(name="missing", port=0, fault="http_404"),
            FleetMember(name="broken", port=0, fault="http_500"),
            FleetMember(name="html", port=0, fault="html_error"),
            FleetMember(name="garbage", port=0, fault="garbage"),
            FleetMember(name="truncated", port=0, fault="truncated_json"),
            FleetMember(name="hang", port=0, fault="hang"),
            FleetMember(name="reset", port=0, fault="reset"),
            FleetMember(name="limited", port=0, fault="http_429", strength=0.05),
        ]
    )
    with running_fleet(spec) as handle:
        yield handle


def report_json(cwd: Path, *args: str) -> dict:
    result = run_auditor("report", "--format", "json", *args, cwd=cwd)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    jsonschema.validate(report, REPORT_CONTRACT)
    return report


def test_round_against_two_providers_on_both_databases(
    fleet: FleetHandle, tmp_path: Path, db_url: str
) -> None:
    providers = [
        provider(
            "acme", fleet.base_url("acme"), price={"input_per_mtok": 1.0, "output_per_mtok": 2.0}
        ),
        provider("bolt", fleet.base_url("bolt"), stream=True),
    ]
    config = write_config(
        tmp_path, providers, db_url, suites=["core"], probes_dir=str(ROOT / "probes")
    )
    result = run_auditor("run", "-c", str(config), "--no-progress", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "acme" in result.stdout and "bolt" in result.stdout

    report = report_json(tmp_path, "-c", str(config))
    assert report["round"]["status"] == "complete" and report["round"]["complete"] is True
    listed = run_auditor("probes", "list", "--probes-dir", str(ROOT / "probes"), cwd=tmp_path)
    per_provider = int(listed.stdout.split("\t")[2].split()[0])
    by_name = {f["provider"]: f for f in report["findings"]}
    assert set(by_name) == {"acme", "bolt"}
    for f in by_name.values():
        assert f["requests"] == per_provider and f["errors"] == 0 and f["tokens"] > 0
        assert f["verdict"] == "inconclusive" and f["baseline"] == "history"

    exported = run_auditor("export", "-c", str(config), "--format", "jsonl", cwd=tmp_path)
    rows = [json.loads(line) for line in exported.stdout.splitlines()]
    assert len(rows) == 2 * per_provider
    assert (
        sum(r["total_tokens"] for r in rows if r["provider"] == "acme") == by_name["acme"]["tokens"]
    )
    streamed = [r for r in rows if r["provider"] == "bolt"]
    assert all(r["ttft_ms"] is not None and "chunks" in r["response_json"] for r in streamed)
    assert all(r["request_json"]["model"] == "smollm2-135m-instruct" for r in rows)
    acme_cost = sum(r["cost"] for r in rows if r["provider"] == "acme")
    assert by_name["acme"]["cost"] == pytest.approx(acme_cost)


def test_misbehaving_providers_are_recorded_errors_and_the_round_completes(
    fleet: FleetHandle, tmp_path: Path, sqlite_url: str
) -> None:
    names = [
        "acme",
        "denied",
        "missing",
        "broken",
        "html",
        "garbage",
        "truncated",
        "hang",
        "reset",
        "limited",
    ]
    providers = [provider(n, fleet.base_url(n), timeout_s=1) for n in names]
    config = write_config(tmp_path, providers, sqlite_url)
    result = run_auditor("run", "-c", str(config), "--no-progress", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr

    findings = {f["provider"]: f for f in report_json(tmp_path, "-c", str(config))["findings"]}
    expected = {
        "denied": "auth",
        "missing": "not_found",
        "broken": "server_error",
        "html": "protocol_error",
        "garbage": "protocol_error",
        "truncated": "protocol_error",
        "hang": "timeout",
        "reset": "network_error",
        "limited": "rate_limited",
    }
    assert findings["acme"]["errors"] == 0 and findings["acme"]["verdict"] == "inconclusive"
    for name, error_class in expected.items():
        f = findings[name]
        assert f["requests"] == MINI_REQUESTS, name
        assert f["errors"] == MINI_REQUESTS, name
        assert f["errors_by_class"] == {error_class: MINI_REQUESTS}, name
        assert f["verdict"] == "unavailable" and f["diagnoses"] == [], name

    db = sqlite3.connect(tmp_path / "auditor.db")
    (html_body,) = db.execute(
        "SELECT s.response_json FROM samples s JOIN providers p ON p.id = s.provider_id "
        "WHERE p.name = 'html' LIMIT 1"
    ).fetchone()
    assert "<html" in json.loads(html_body)["raw_text"].lower()
    attempts = db.execute(
        "SELECT p.name, max(s.attempts) FROM samples s JOIN providers p ON p.id = s.provider_id "
        "GROUP BY p.name"
    ).fetchall()
    assert dict(attempts)["broken"] == 2 and dict(attempts)["denied"] == 1


def test_fail_on_levels_set_the_exit_code(
    fleet: FleetHandle, tmp_path: Path, sqlite_url: str
) -> None:
    providers = [
        provider("acme", fleet.base_url("acme")),
        provider("denied", fleet.base_url("denied")),
    ]
    config = write_config(tmp_path, providers, sqlite_url)
    warn = run_auditor(
        "run", "-c", str(config), "--no-progress", "--fail-on", "warning", cwd=tmp_path
    )
    assert warn.returncode == 1
    crit = run_auditor(
        "run", "-c", str(config), "--no-progress", "--fail-on", "critical", cwd=tmp_path
    )
    assert crit.returncode == 0
    dev = run_auditor(
        "run", "-c", str(config), "--no-progress", "--fail-on", "deviant", cwd=tmp_path
    )
    assert dev.returncode == 0


def test_budget_stops_the_round_cleanly(
    fleet: FleetHandle, tmp_path: Path, sqlite_url: str
) -> None:
    providers = [provider("acme", fleet.base_url("acme"), max_concurrency=1)]
    config = write_config(tmp_path, providers, sqlite_url)
    result = run_auditor(
        "run", "-c", str(config), "--no-progress", "--max-requests", "3", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    report = report_json(tmp_path, "-c", str(config))
    assert report["round"]["status"] == "complete"
    assert report["round"]["complete"] is False
    assert report["round"]["stop_reason"] == "budget: max_requests"
    assert report["findings"][0]["requests"] == 3


def test_selection_export_csv_and_compare(
    fleet: FleetHandle, tmp_path: Path, sqlite_url: str
) -> None:
    providers = [provider("acme", fleet.base_url("acme")), provider("bolt", fleet.base_url("bolt"))]
    config = write_config(tmp_path, providers, sqlite_url)
    result = run_auditor(
        "run", "-c", str(config), "--no-progress", "--provider", "bolt", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    report = report_json(tmp_path, "-c", str(config), "--last")
    assert [f["provider"] for f in report["findings"]] == ["bolt"]
    round_id = report["round"]["id"]

    exported = run_auditor(
        "export", "-c", str(config), "--format", "csv", "--round", round_id, cwd=tmp_path
    )
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert len(rows) == MINI_REQUESTS and {r["provider"] for r in rows} == {"bolt"}
    assert json.loads(rows[0]["request_json"])["messages"]

    db = sqlite3.connect(tmp_path / "auditor.db")
    db.execute("DELETE FROM findings")
    db.commit()
    recomputed = run_auditor(
        "compare", "-c", str(config), "--round", round_id, "--format", "json", cwd=tmp_path
    )
    assert recomputed.returncode == 0, recomputed.stderr
    assert json.loads(recomputed.stdout)["findings"][0]["requests"] == MINI_REQUESTS

    markdown = run_auditor("report", "-c", str(config), "--format", "markdown", cwd=tmp_path)
    assert markdown.stdout.startswith("# Audit report") and "| bolt |" in markdown.stdout


@pytest.mark.model
def test_round_includes_the_embedded_reference(
    fleet: FleetHandle, tmp_path: Path, sqlite_url: str
) -> None:
    config = write_config(
        tmp_path,
        [provider("acme", fleet.base_url("acme"))],
        sqlite_url,
        reference={"engine": "llama_cpp", "model_path": "packaged", "n_ctx": 2048},
    )
    for _ in range(2):
        result = run_auditor("run", "-c", str(config), "--no-progress", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    report = report_json(tmp_path, "-c", str(config))
    assert report["round"]["reference_digest"].startswith("sha256:")
    assert report["findings"][0]["baseline"] == "reference"
    db = sqlite3.connect(tmp_path / "auditor.db")
    rows = db.execute(
        "SELECT s.round_id, s.probe_id, s.sample_index, s.output_text FROM samples s "
        "JOIN providers p ON p.id = s.provider_id WHERE p.kind = 'reference' AND s.ok"
    ).fetchall()
    assert len(rows) == 2 * MINI_REQUESTS
    greedy = {}
    for _round_id, probe, index, text in rows:
        if probe != "poem":  # temperature 0: the reference answers the same in both rounds
            greedy.setdefault((probe, index), set()).add(text)
    assert greedy and all(len(texts) == 1 for texts in greedy.values())
    # The second round reused every reference answer from the cache instead of recomputing.
    cached = db.execute(
        "SELECT r.started_at, s.cached FROM samples s JOIN rounds r ON r.id = s.round_id "
        "JOIN providers p ON p.id = s.provider_id WHERE p.kind = 'reference' ORDER BY r.started_at"
    ).fetchall()
    assert [c for _, c in cached] == [0] * MINI_REQUESTS + [1] * MINI_REQUESTS
    (entries,) = db.execute("SELECT count(*) FROM reference_cache").fetchone()
    assert entries == MINI_REQUESTS  # the greedy cases once, each sampled case per sample number
    # Every answer with text, the provider's and the reference's, is scored under the reference.
    unscored = db.execute(
        "SELECT count(*) FROM samples s WHERE s.ok AND s.output_text != '' AND NOT EXISTS "
        "(SELECT 1 FROM scores c WHERE c.sample_id = s.id AND c.metric = 'ref_logprob_mean')"
    ).fetchone()[0]
    assert unscored == 0
    values = db.execute(
        "SELECT c.value FROM scores c JOIN samples s ON s.id = c.sample_id "
        "JOIN providers p ON p.id = s.provider_id "
        "WHERE c.metric = 'ref_top1_share' AND p.kind = 'reference' AND s.probe_id != 'poem'"
    ).fetchall()
    assert values and all(v > 0.9 for (v,) in values)  # its own greedy answers: top choices


def test_a_reference_that_cannot_score_continuations_reports_not_available(
    fleet: FleetHandle, tmp_path: Path, sqlite_url: str
) -> None:
    template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    tokenizer = tmp_path / "tokenizer_config.json"
    tokenizer.write_text(json.dumps({"chat_template": template}))
    # An echo member: no /v1/completions.
    reference = endpoint_reference(fleet.base_url("bolt"), tokenizer_path=str(tokenizer))
    config = write_config(
        tmp_path, [provider("acme", fleet.base_url("acme"))], sqlite_url, reference=reference
    )
    result = run_auditor("run", "-c", str(config), "--no-progress", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "continuation scores not available" in result.stderr and "404" in result.stderr
    (finding,) = report_json(tmp_path, "-c", str(config))["findings"]
    assert finding["baseline"] == "reference"
    (missing,) = [t for t in finding["tests"] if t["status"] == "not_available"]
    assert missing["name"] == "reference_likelihood" and missing["p_value"] is None
    assert "did not score" in missing["note"]


def test_calibrate_stores_honest_bands_that_later_reports_show(
    fleet: FleetHandle, tmp_path: Path, sqlite_url: str
) -> None:
    reference = endpoint_reference(fleet.base_url("acme"))
    providers = [
        provider("acme", fleet.base_url("acme"), trusted=True),
        provider("bolt", fleet.base_url("bolt"), trusted=True),
    ]
    config = write_config(tmp_path, providers, sqlite_url, reference=reference)
    result = run_auditor("run", "-c", str(config), "--no-progress", cwd=tmp_path)
    assert result.returncode == 0, result.stderr

    alone = run_auditor("calibrate", "-c", str(config), "--rounds", "50", cwd=tmp_path)
    assert alone.returncode == 0, alone.stderr
    assert "flagged in 0 of 50 simulated honest rounds" in alone.stdout
    db = sqlite3.connect(tmp_path / "auditor.db")
    honest, rounds, upper = db.execute(
        "SELECT honest_endpoints, rounds, upper_bound FROM calibrations"
    ).fetchone()
    assert json.loads(honest) == ["acme", "bolt"] and rounds == 50 and 0 < upper < 0.1

    run_auditor("compare", "-c", str(config), cwd=tmp_path)
    tests = {t["name"]: t for t in report_json(tmp_path, "-c", str(config))["findings"][0]["tests"]}
    assert tests["shift:words"]["honest_range"][0] is not None  # from the calibration

    bundle_path = tmp_path / "evidence.json"
    evidence = ["--evidence", "--provider", "bolt", "-o", str(bundle_path)]
    exported = run_auditor("export", "-c", str(config), *evidence, cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    bundle = json.loads(bundle_path.read_text())
    (finding,) = bundle["findings"]  # bolt only: never another provider's answers
    assert bundle["format"] == "auditor-evidence/1" and finding["provider"] == "bolt"
    assert len(finding["probes"]) == 4  # the mini suite's cases
    stored = dict(
        db.execute(
            "SELECT s.probe_id || '/' || s.sample_index || '/' || p.name, s.output_text "
            "FROM samples s JOIN providers p ON p.id = s.provider_id"
        ).fetchall()
    )
    for probe in finding["probes"]:
        for side, name in (("reference", "reference"), ("provider", "bolt")):
            for answer in probe[side]:
                key = f"{probe['probe_id']}/{answer['sample_index']}/{name}"
                assert answer["text"] == stored[key]
    none = run_auditor("export", "-c", str(config), "--evidence", cwd=tmp_path)
    assert json.loads(none.stdout)["findings"] == []  # no deviant provider in this round

    again = run_auditor("run", "-c", str(config), "--no-progress", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    ids = [r for (r,) in db.execute("SELECT id FROM rounds ORDER BY started_at")]
    args = [a for r in ids for a in ("--round", r)]
    both = run_auditor("calibrate", "-c", str(config), *args, "--rounds", "30", cwd=tmp_path)
    assert both.returncode == 0, both.stderr
    (stored,) = db.execute("SELECT round_ids FROM calibrations ORDER BY id DESC LIMIT 1").fetchone()
    assert json.loads(stored) == ids
    missing = run_auditor("calibrate", "-c", str(config), "--round", "nope", cwd=tmp_path)
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1


def test_a_sequential_budget_tests_each_look_at_alpha_over_looks(
    fleet: FleetHandle, tmp_path: Path, sqlite_url: str
) -> None:
    reference = endpoint_reference(fleet.base_url("acme"))
    sequential = {"looks": 2, "extra_samples": 3, "consistent_p": 0.5}
    config = write_config(
        tmp_path,
        [provider("bolt", fleet.base_url("bolt"))],
        sqlite_url,
        reference=reference,
        extra={"budget": {"sequential": sequential}},
    )
    result = run_auditor("run", "-c", str(config), "--no-progress", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = report_json(tmp_path, "-c", str(config))
    (finding,) = report["findings"]
    assert report["spend_by_verdict"][finding["verdict"]]["requests"] == finding["requests"]
    db = sqlite3.connect(tmp_path / "auditor.db")
    (params,) = db.execute("SELECT detector_params FROM findings").fetchone()
    assert json.loads(params)["looks"] == 2 and json.loads(params)["alpha_per_look"] == 0.025
    # An echo provider answers as the reference: settled at the first look, nothing more sent.
    assert finding["requests"] == MINI_REQUESTS
    recomputed = run_auditor("compare", "-c", str(config), cwd=tmp_path)
    assert recomputed.returncode == 0, recomputed.stderr
    (params,) = db.execute("SELECT detector_params FROM findings").fetchone()
    assert json.loads(params)["alpha_per_look"] == 0.025  # the round's looks, from the database
