"""A finding's context window keeps each rung's counts task by task, as the test reads them."""

from __future__ import annotations

from helpers.ladder import SAMPLES, WINDOW, answer, every_request, reference

from auditor.judging.context_window import context_window
from auditor.records import ContextWindow, LadderTask


def test_each_rung_keeps_its_counts_task_by_task_and_they_survive_json() -> None:
    provider = [answer(t, r, s, passed=t != "needle" or r < 4) for t, r, s in every_request()]
    window = context_window(reference(), provider, WINDOW)
    assert window is not None
    rung = window.rungs[4]
    by_task = {t.task: t for t in rung.tasks}
    assert by_task["needle"] == LadderTask(
        task="needle",
        provider_passed=0,
        provider_tried=SAMPLES,
        reference_passed=SAMPLES,
        reference_tried=SAMPLES,
    )
    assert sum(t.provider_passed for t in rung.tasks) == rung.provider_passed == 3 * SAMPLES
    assert ContextWindow.model_validate_json(window.model_dump_json()) == window
    # a context window stored before rungs had tasks still reads
    old = window.model_dump(mode="json")
    for r in old["rungs"]:
        del r["tasks"]
    assert ContextWindow.model_validate(old).rungs[4].tasks == []
