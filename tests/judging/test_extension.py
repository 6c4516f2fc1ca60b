"""The README's worked example of a new diagnosis kind, run as written: a comparison module
with its metric, kind and rule, registered like a plugin, reaches the finding."""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from auditor.comparisons.base import comparators
from auditor.comparisons.observation import Observation
from auditor.comparisons.rules import kinds, rules
from auditor.judging.findings import ProviderRecord, assess
from auditor.judging.verdict import VerdictPolicy
from auditor.records import Finding

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
def footer_plugin() -> Iterator[types.ModuleType]:
    block = re.search(r"```python\n# myplugin/footer.py\n(.*?)```", README.read_text(), re.S)
    assert block, "the README's worked example is gone"
    module = types.ModuleType("myplugin_footer")
    sys.modules[module.__name__] = module
    exec(compile(block.group(1), "README.md: myplugin/footer.py", "exec"), module.__dict__)
    yield module
    comparators.remove("footer")
    rules.remove("injected_text.footer")
    kinds.remove("injected_text")
    del sys.modules[module.__name__]


def answers(endpoint: str, footer: str = "") -> list[Observation]:
    return [
        Observation(
            model="m",
            endpoint=endpoint,
            kind="provider",
            trusted=False,
            probe_id=f"p{i}",
            probe_hash=f"h{i}",
            sample_index=0,
            ok=True,
            text=f"The answer to question {i} is {i * 7}.{footer}",
            finish_reason="stop",
            prompt_tokens=20,
            completion_tokens=10,
            total_tokens=30,
            error_class=None,
            case={"params": {"temperature": 0}, "messages": [{"role": "user", "content": "q"}]},
        )
        for i in range(20)
    ]


def judged(provider: list[Observation]) -> Finding:
    record = ProviderRecord("m", provider[0].endpoint, len(provider), 0, 0)
    return assess(
        record, "reference", answers("reference"), provider, [], VerdictPolicy(), {}, seed="t"
    )


def test_the_new_kind_is_named_for_a_host_that_adds_a_footer(
    footer_plugin: types.ModuleType,
) -> None:
    finding = judged(answers("examplecloud", footer="\nPowered by ExampleCloud"))
    assert finding.verdict == "deviant"
    assert finding.diagnoses[0].kind == "injected_text"
    assert finding.diagnoses[0].summary == "20 answers end with a line of the host's own"
    assert finding.severity == "warning"  # not a kind that changes the model served
    assert Finding.model_validate_json(finding.model_dump_json()) == finding


def test_an_honest_host_is_untouched_by_it(footer_plugin: types.ModuleType) -> None:
    finding = judged(answers("honest"))
    assert not finding.diagnoses
    test = next(t for t in finding.tests if t.name == "violations:added_footer")
    assert test.p_value == 1.0
