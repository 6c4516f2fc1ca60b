"""The README's JSON example of a finding's `context_window` is what the auditor writes: it
validates as the record, and its numbers agree with each other."""

from __future__ import annotations

import json
import re

from helpers.cli import ROOT

from auditor.records import ContextWindow


def context_window_example() -> ContextWindow:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("So is a finding's `context_window`")
    block = re.findall(r"```json\n(.*?)```", readme[start:], flags=re.S)[0]
    return ContextWindow.model_validate(json.loads(block))


def test_the_readme_context_window_example_is_a_valid_reading() -> None:
    window = context_window_example()
    assert window.declared is not None and window.effective is not None
    assert window.breaks_at is not None and window.effective < window.breaks_at
    by_length = {r.length: r for r in window.rungs}
    assert by_length[window.effective].status == "match"
    assert by_length[window.breaks_at].status == "fail"
    assert f"{window.breaks_at:,}" in window.summary
    for rung in window.rungs:
        for side in ("provider", "reference"):
            total = sum(getattr(t, f"{side}_tried") for t in rung.tasks)
            assert total == getattr(rung, f"{side}_tried")
            passed = sum(getattr(t, f"{side}_passed") for t in rung.tasks)
            assert passed == getattr(rung, f"{side}_passed")
