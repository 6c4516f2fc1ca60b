"""Context ladder observations for tests: four tasks on six rungs, three samples each."""

from __future__ import annotations

from typing import Any

from auditor.comparisons.observation import Observation
from helpers.observations import observation

TASKS = ("needle", "multikey", "variable_tracking", "aggregation")
#: What each rung was built for (`target_tokens`), and the reference's count of its prompts.
TARGETS = (512, 1024, 1536, 2048, 3072, 4096)
LENGTHS = (496, 992, 1488, 1984, 2976, 3968)
SAMPLES = 3  # 12 answers a rung: at 8, even a perfect match confirms no rung
WINDOW = 8192


def ladder_case(task: str, rung: int) -> dict[str, Any]:
    return {
        "params": {"temperature": 0.0, "max_tokens": 32},
        "messages": [{"role": "user", "content": f"a long prompt: {task} at rung {rung}"}],
        "signals": ["long_context"],
        "samples": SAMPLES,
        "metadata": {
            "generator": "context_ladder",
            "task": task,
            "rung": rung,
            "fraction": TARGETS[rung] / WINDOW,
            "window": WINDOW,
            "target_tokens": TARGETS[rung],
        },
    }


def probe(task: str, rung: int) -> int:
    return rung * len(TASKS) + TASKS.index(task)


def answer(
    task: str, rung: int, sample: int, passed: bool = True, endpoint: str = "provider", **kw: Any
) -> Observation:
    fields: dict[str, Any] = {
        "text": "1234" if passed else "I could not find it",
        "prompt_tokens": LENGTHS[rung],
        "scores": {"expect_pass": float(passed), "words": 1.0 if passed else 5.0},
        **kw,
    }
    return observation(
        probe(task, rung),
        sample_index=sample,
        endpoint=endpoint,
        case=ladder_case(task, rung),
        **fields,
    )


def error(task: str, rung: int, sample: int, error_class: str, **kw: Any) -> Observation:
    return answer(
        task,
        rung,
        sample,
        ok=False,
        text=None,
        finish_reason=None,
        prompt_tokens=None,
        completion_tokens=None,
        total_tokens=None,
        error_class=error_class,
        scores={},
        **kw,
    )


def every_request() -> list[tuple[str, int, int]]:
    return [(t, r, s) for r in range(len(TARGETS)) for t in TASKS for s in range(SAMPLES)]


def reference() -> list[Observation]:
    return [answer(t, r, s, endpoint="reference") for t, r, s in every_request()]


def honest() -> list[Observation]:
    return [answer(t, r, s) for t, r, s in every_request()]
