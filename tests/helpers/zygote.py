"""A warm "zygote": a process that has imported the auditor (and nothing else: no database, no
threads) and forks `auditor` commands on request, each running `auditor.cli.main(argv)` in a
fresh child exactly as the console script does, without its seconds of imports. The
`zygote` fixture of tests/conftest.py is one per test module."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ZYGOTE = r"""
import json, os, sys, traceback
from auditor.cli import main
import auditor.rounds.run, auditor.report.render, auditor.report.export  # noqa: F401
from auditor.providers.base import adapters
from auditor.scorers import scorers
adapters.get("openai")
scorers.names()
print(json.dumps({"ready": os.getpid()}), flush=True)
for line in sys.stdin:
    order = json.loads(line)
    if order["op"] == "wait":
        _, status = os.waitpid(order["pid"], 0)
        print(json.dumps({"status": status}), flush=True)
        continue
    pid = os.fork()
    if pid:
        print(json.dumps({"pid": pid}), flush=True)
        continue
    out = os.open(order["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0), os.dup2(out, 1), os.dup2(out, 2)
    os.chdir(order["cwd"])
    os.environ.update(order["env"])
    code = 0
    try:
        main(order["argv"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 70
    sys.stdout.flush(), sys.stderr.flush()
    os._exit(code)
"""


class Zygote:
    """A warm process that forks `auditor` commands on request."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", ZYGOTE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "NO_COLOR": "1"},
        )
        assert "ready" in self._answer()

    def _answer(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, "the zygote died"
        return json.loads(line)

    def _order(self, **order: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(order) + "\n")
        self.proc.stdin.flush()
        return self._answer()

    def spawn(self, argv: list[str], cwd: Path, out: Path, env: dict[str, str]) -> int:
        return int(self._order(op="spawn", argv=argv, cwd=str(cwd), out=str(out), env=env)["pid"])

    def wait(self, pid: int) -> int:
        """The child's wait status (it is reaped: a zombie would still look alive)."""
        return int(self._order(op="wait", pid=pid)["status"])

    def command(
        self, argv: list[str], cwd: Path, env: dict[str, str] | None = None
    ) -> tuple[int, str]:
        """Run a command to its end: its exit code and output (stdout and stderr)."""
        out = cwd / f"command-{time.monotonic_ns()}.log"
        status = self.wait(self.spawn(argv, cwd, out, env or {}))
        return os.waitstatus_to_exitcode(status), out.read_text()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)
