"""Without the fleet's distribution installed, the fleet commands fail in one line, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Runs the `auditor` command as its console script does, in an interpreter where the
# top-level package named by $BLOCKED (default `auditor_fleet`) and its submodules cannot be
# imported, as if never installed.
WITHOUT_FLEET = """
import os
import sys

BLOCKED = os.environ.get("BLOCKED", "auditor_fleet")


class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, Blocker())
from auditor.cli import main

main()
"""

NOT_INSTALLED = "auditor: error: the demo fleet is not installed: pip install -e ./fleet"


@pytest.mark.parametrize(
    "argv",
    [
        ["fleet", "up", "--echo"],
        ["fleet", "down"],
        ["fleet", "status"],
        ["demo", "--echo"],
    ],
    ids=" ".join,
)
def test_fleet_commands_name_the_missing_fleet_in_one_line(tmp_path: Path, argv: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_FLEET, *argv],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.splitlines() == [NOT_INSTALLED], result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert list(tmp_path.iterdir()) == []  # nothing written (no demo-providers.yaml, no state)


def test_a_missing_dependency_of_the_fleet_is_one_line_too(tmp_path: Path) -> None:
    """numpy stands for any package the fleet imports and the `auditor` command does not."""
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_FLEET, "fleet", "status"],
        cwd=tmp_path,
        env={**os.environ, "BLOCKED": "numpy"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.splitlines() == [
        "auditor: error: the demo fleet needs numpy: pip install -e ./fleet"
    ], result.stderr


def test_the_fleet_commands_still_have_help_without_the_fleet(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_FLEET, "fleet", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "up" in result.stdout and "status" in result.stdout
