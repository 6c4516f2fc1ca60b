"""`auditor serve` as a user runs it: a real process, a real port, refusals as one line."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from pathlib import Path

import httpx
import pytest
from helpers.cli import AUDITOR, provider, run_auditor, write_config

from auditor.storage.db import ensure_schema, make_engine

pytestmark = pytest.mark.slow  # each test runs `auditor serve` or the console script

TOKEN = "serve-token-abcdef123"


def schema_db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'results.db'}"
    ensure_schema(make_engine(url))
    return url


def start(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [AUDITOR, "serve", *args],
        cwd=cwd,
        env={**os.environ, "NO_COLOR": "1", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"serving (http://\S+?)/ ", line)
    if match is None:
        proc.kill()
        pytest.fail(f"no serving line: {line!r} {proc.stderr.read() if proc.stderr else ''}")
    return proc, match.group(1)


def stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=30)


def test_serves_the_dashboard_until_sigterm(tmp_path: Path) -> None:
    url = schema_db(tmp_path)
    proc, base = start(["--database", url, "--port", "0"], tmp_path, {})
    try:
        assert base.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=base, trust_env=False, timeout=20) as client:
            assert client.get("/").status_code == 200
            overview = client.get("/api/overview")
            assert overview.status_code == 200
            assert overview.json()["cells"] == []
            assert client.get("/api/openapi.json").json()["paths"]
    finally:
        code = stop(proc)
    assert code == 0


def test_off_loopback_needs_the_token(tmp_path: Path) -> None:
    url = schema_db(tmp_path)
    refused = run_auditor(
        "serve",
        "--database",
        url,
        "--host",
        "0.0.0.0",
        "--port",
        "0",
        cwd=tmp_path,
        env={"AUDITOR_WEB_TOKEN": ""},
    )
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1
    assert "AUDITOR_WEB_TOKEN" in refused.stderr
    assert "Traceback" not in refused.stderr

    proc, base = start(
        ["--database", url, "--host", "0.0.0.0", "--port", "0"],
        tmp_path,
        {"AUDITOR_WEB_TOKEN": TOKEN},
    )
    try:
        port = base.rsplit(":", 1)[1]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False) as client:
            assert client.get("/api/overview").status_code == 401
            assert client.get("/healthz").status_code == 200
            auth = {"Authorization": f"Bearer {TOKEN}"}
            assert client.get("/api/overview", headers=auth).status_code == 200
    finally:
        assert stop(proc) == 0
    assert proc.stdout is not None and proc.stderr is not None
    assert TOKEN not in proc.stdout.read() + proc.stderr.read()


def test_a_missing_database_file_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "typo.db"
    result = run_auditor("serve", "--database", f"sqlite:///{missing}", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "no such file" in result.stderr
    assert not missing.exists()


def test_an_outdated_schema_is_refused(tmp_path: Path) -> None:
    from auditor.storage.db import upgrade

    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(make_engine(url), "0001")
    result = run_auditor("serve", "--database", url, cwd=tmp_path)
    assert result.returncode == 2
    assert "auditor db upgrade" in result.stderr


def test_a_config_bound_off_loopback_without_its_token_names_the_line(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        [provider("acme", "http://127.0.0.1:9/v1")],
        schema_db(tmp_path),
        extra={
            "schedule": [{"suite": "mini", "every": "1h"}],
            "server": {"host": "0.0.0.0", "port": 0, "token_env": "OPS_DASH_TOKEN"},
        },
    )
    line = next(i for i, text in enumerate(config.read_text().splitlines(), 1) if "0.0.0.0" in text)
    no_token = {"OPS_DASH_TOKEN": ""}
    for argv in (["daemon"], ["config", "validate"], ["serve", "--port", "0"]):
        result = run_auditor(*argv, "-c", str(config), cwd=tmp_path, env=no_token)
        assert result.returncode == 2, argv
        assert result.stderr.count("\n") == 1, result.stderr
        assert f"providers.yaml:{line}: server.host: 0.0.0.0" in result.stderr
        assert "OPS_DASH_TOKEN" in result.stderr
    valid = run_auditor(
        "config", "validate", "-c", str(config), cwd=tmp_path, env={"OPS_DASH_TOKEN": TOKEN}
    )
    assert valid.returncode == 0, valid.stderr
    # On the command line, the flag is named instead.
    result = run_auditor(
        "serve", "-c", str(config), "--host", "10.0.0.1", cwd=tmp_path, env=no_token
    )
    assert result.returncode == 2
    assert "--host: 10.0.0.1 is reachable" in result.stderr


def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    url = schema_db(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_auditor("serve", "--database", url, "--port", str(port), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
