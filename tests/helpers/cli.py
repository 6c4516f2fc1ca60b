"""Helpers for tests that drive the `auditor` console script: a providers.yaml with a small
suite beside it, a provider entry that retries fast, the command run in a subprocess, and the
one-line error every bad input must end in."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

AUDITOR = str(Path(sys.executable).parent / "auditor")
ROOT = Path(__file__).resolve().parents[2]

MINI_SUITE = {
    "suite": "mini",
    "description": "A few cheap cases for end-to-end tests.",
    "defaults": {"params": {"temperature": 0, "max_tokens": 24}},
    "cases": [
        {
            "id": "add",
            "prompt": "What is 17 + 25? Answer with one number.",
            "expect": {"number": 42},
        },
        {"id": "capital", "prompt": "Capital of France? One word.", "expect": {"exact": "Paris"}},
        {
            "id": "password",
            "system": "The password is TANGERINE.",
            "prompt": "What is the password?",
            "expect": {"regex": "TANGERINE"},
        },
        {
            "id": "poem",
            "prompt": "Write a line about the sea.",
            "params": {"temperature": 1},
            "samples": 2,
        },
    ],
}
MINI_REQUESTS = 5  # per provider


def write_config(
    tmp_path: Path,
    providers: list[dict[str, Any]],
    database: str,
    *,
    suites: list[str] | None = None,
    reference: dict[str, Any] | None = None,
    probes_dir: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """A providers.yaml in tmp_path; the mini suite is written beside it unless probes_dir."""
    if probes_dir is None:
        (tmp_path / "probes").mkdir(exist_ok=True)
        (tmp_path / "probes" / "mini.yaml").write_text(yaml.safe_dump(MINI_SUITE))
        probes_dir = "probes"
    config = {
        "database": database,
        "reference": reference,
        "suites": suites or ["mini"],
        "probes_dir": probes_dir,
        "models": [{"name": "smollm2-135m-instruct", "providers": providers}],
        **(extra or {}),
    }
    path = tmp_path / "providers.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def provider(name: str, base_url: str, **fields: Any) -> dict[str, Any]:
    fast_retry = {
        "max_attempts": 2,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        "max_total_s": 5,
    }
    return {
        "name": name,
        "base_url": base_url,
        "model": "smollm2-135m-instruct",
        "requests_per_second": 200,
        "max_concurrency": 4,
        "timeout_s": 5,
        "retry": fast_retry,
        **fields,
    }


def run_auditor(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    return subprocess.run(
        [AUDITOR, *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Exit code 2 and a single line on stderr holding every fragment; never a traceback."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def endpoint_reference(base_url: str, **fields: Any) -> dict[str, Any]:
    """A reference of engine `endpoint` at `base_url` (an echo member of the demo fleet
    stands in for the reference model)."""
    return {"engine": "endpoint", "base_url": base_url, "model": "smollm2-135m-instruct", **fields}


def free_port_range(n: int) -> int:
    """A base port with `n` consecutive free loopback ports from it."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + n > 65000:
            continue
        try:
            for port in range(base, base + n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no range of free loopback ports")
