"""Every registered rule is in the rules table of docs/judging.md, so the documentation says
what the detector does."""

from __future__ import annotations

from pathlib import Path

from auditor.comparisons.rules import rules

DOCS = Path(__file__).resolve().parents[2] / "docs" / "judging.md"


def test_every_rule_is_documented() -> None:
    text = DOCS.read_text()
    missing = [name for name in rules.names() if f"`{name}`" not in text]
    assert missing == []
