"""A suite of perturbed pairs: arithmetic problems, each an original and its twins with other
numbers (`perturbed_arithmetic`), for the `memorized` fault's tests and fixtures."""

from __future__ import annotations

SYSTEM = "Solve the sum. Begin your reply with 'The answer is'."
# Problems of probes/deep.yaml: the packaged model fails the first five originals and
# solves the last (measured); twins are its own answers for the tuned provider too.
PROBLEMS = [
    ("times", "{a} * {b}", "a * b", {"a": 3, "b": 4}, 2, 9, 12),
    ("minus", "{a} - {b}", "a - b", {"a": 9, "b": 4}, 2, 9, 13),
    ("three", "{a} + {b} + {c}", "a + b + c", {"a": 2, "b": 3, "c": 4}, 1, 6, 14),
    ("words", "Add {a} and {b}.", "a + b", {"a": 5, "b": 4}, 2, 9, 16),
    ("double", "{a} * {b} + {c}", "a * b + c", {"a": 2, "b": 5, "c": 1}, 1, 6, 17),
    ("add", "{a} + {b}", "a + b", {"a": 4, "b": 3}, 2, 9, 11),
]
PAIRS_SUITE = {
    "suite": "pairs",
    "defaults": {"params": {"temperature": 0, "max_tokens": 16}},
    "cases": [
        {
            "id": name,
            "system": SYSTEM,
            "signals": ["greedy", "task"],
            "generator": {
                "name": "perturbed_arithmetic",
                "params": {
                    "problem": problem,
                    "answer": answer,
                    "values": values,
                    "twins": 4,  # 5 cases a group: one moved group alone has p 1/5
                    "low": low,
                    "high": high,
                    "seed": seed,
                },
            },
        }
        for name, problem, answer, values, low, high, seed in PROBLEMS
    ],
}
