"""Every fault of the fleet's table, run through the comparisons and the diagnosis rules on
recorded rounds (`tests/fixtures/fleet_rounds/`): each gets its expected verdict, and its
expected diagnosis first. A fault the table expects and no recorded round plants fails:
record it (`tests/fixtures/record_fleet_rounds.py`) or change the expectation."""

from __future__ import annotations

import pytest
from auditor_fleet.demo import EXPECTED
from helpers.recorded import recorded_rounds

#: Faults whose judging is not built yet: each must fail here until it is (strict xfail).
PENDING: dict[str, str] = {}


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(f, marks=pytest.mark.xfail(strict=True, reason=PENDING[f]))
        if f in PENDING
        else f
        for f in sorted(EXPECTED)
    ],
)
def test_each_planted_fault_gets_its_expected_verdict_and_diagnosis(fault: str) -> None:
    planted = [(r, e) for r in recorded_rounds() for e in r.providers() if e.fault == fault]
    assert planted, f"no recorded round plants {fault}: nothing shows the detector finds it"
    verdict, kind = EXPECTED[fault]
    for recorded, member in planted:
        finding = recorded.judge(member.name)
        said = [d.kind for d in finding.diagnoses]
        where = f"{member.name} in the recorded {recorded.suite} round: {finding.verdict} {said}"
        assert finding.verdict == verdict, where
        if kind is None:
            assert said == [], where
        else:
            assert said[:1] == [kind], where
