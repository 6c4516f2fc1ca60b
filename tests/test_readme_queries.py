"""The example queries of the README run, on both databases, and answer what they claim."""

from __future__ import annotations

import re

from helpers.cli import ROOT
from sqlalchemy import text

from auditor.records import CompletionRequest, CompletionResponse, Message, ProbeCase, Usage
from auditor.scorers.reasoning import ReasoningScorer
from auditor.storage.db import ensure_schema, make_engine
from auditor.storage.repository import Store
from auditor.storage.tables import RoundRow

CASE = ProbeCase(
    id="capital-france", suite="core", messages=[Message(role="user", content="Capital?")]
)


def readme_queries() -> list[str]:
    blocks = re.findall(r"```sql\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    assert len(blocks) >= 3
    return blocks


def test_readme_queries(db_url: str) -> None:
    engine = make_engine(db_url)
    ensure_schema(engine)
    store = Store(engine)
    store.upsert_probe_cases([CASE])
    store.start_round(RoundRow(id="r1", suite="core", suite_hash="h", auditor_version="t"))
    ids = {name: store.upsert_provider("m", name) for name in ("acme", "bolt")}
    ids["reference"] = store.upsert_provider("m", "reference", kind="reference")
    for name, pid in ids.items():
        for k in range(2):
            ok = not (name == "bolt" and k == 1)
            # acme returns its reasoning apart; bolt leaves it in the answer
            thought = "<think>France.</think>" if name == "bolt" else ""
            response = CompletionResponse(
                ok=ok,
                text=f"{thought}{name} says Paris" if ok else None,
                reasoning="France's capital." if name == "acme" else None,
                usage=Usage(total_tokens=10 if ok else None),
                latency_s=0.1,
            )
            scores = ReasoningScorer().score(CASE, response)
            store.add_sample(
                "r1", pid, CompletionRequest.from_case(CASE, k), response, scores, None
            )
    summary, history, reasoning = readme_queries()
    if engine.dialect.name == "sqlite":
        summary = summary.replace(
            "CURRENT_TIMESTAMP - INTERVAL '7 days'", "datetime('now', '-7 days')"
        )
    with engine.connect() as conn:
        rows = {r.provider: r for r in conn.execute(text(summary))}
        assert rows["bolt"].requests == 2 and float(rows["bolt"].error_rate) == 0.5
        assert float(rows["acme"].error_rate) == 0 and rows["acme"].tokens == 20
        answers = conn.execute(text(history)).all()
        assert len(answers) == 6
        assert answers[0].provider == "reference"
        flagged = {
            (r.provider, r.metric): (r.answers, float(r.flagged))
            for r in conn.execute(text(reasoning))
        }
        assert flagged[("acme", "reasoning_returned")] == (2, 2.0)
        assert flagged[("bolt", "reasoning_leak")] == (1, 1.0)  # its error is not scored
        assert flagged[("reference", "answer_missing")] == (2, 0.0)
