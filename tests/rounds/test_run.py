"""Choosing a round's models and the cases each is sent (`select`): per-model cases at the
window each model's profile gives, the profile's sampler, models with nothing to send."""

from __future__ import annotations

import json
import sqlite3
import textwrap
from pathlib import Path
from typing import Any

import pytest
import structlog
from helpers.servers import RecordingProvider

from auditor.config import AuditorConfig
from auditor.errors import ProbeFileError, UsageError
from auditor.probes import Suite, load_suite_file
from auditor.records import content_hash
from auditor.rounds.run import run_round_async, select
from auditor.storage.db import ensure_schema, make_engine
from auditor.storage.repository import Store

SUITE = """
suite: lad
defaults:
  params: {temperature: 0, max_tokens: 32}
cases:
  - {id: hello, prompt: "Say hello.", params: {temperature: 1}, samples: 3}
  - id: ladder
    generator:
      name: context_ladder
      params: {fractions: [0.25, 0.5], tasks: [needle, aggregation]}
"""


@pytest.fixture
def suite(tmp_path: Path) -> Suite:
    path = tmp_path / "lad.yaml"
    path.write_text(textwrap.dedent(SUITE).lstrip(), encoding="utf-8")
    [loaded] = load_suite_file(path)
    return loaded


def config(
    base_url: str = "http://127.0.0.1:9/v1", database: str | None = None, **profiles: dict[str, Any]
) -> AuditorConfig:
    provider = {"name": "acme", "base_url": base_url, "model": "m", "requests_per_second": 500}
    models = [
        {"name": name, "profile": profile, "providers": [provider]}
        for name, profile in profiles.items()
    ]
    return AuditorConfig.model_validate(
        {"models": models, **({"database": database} if database else {})}
    )


def prompt_chars(case: Any) -> int:
    return len(case.messages[-1].content)


def test_each_model_gets_the_ladder_at_its_own_window(suite: Suite) -> None:
    selection = select(
        config(small={"context_window": 2048}, large={"context_window": 8192}), suite, None, None
    )
    assert [m.name for m in selection.models] == ["small", "large"]
    small, large = selection.cases["small"], selection.cases["large"]
    assert [c.id for c in small] == [
        "hello",
        "ladder.needle.len496",
        "ladder.needle.len992",
        "ladder.aggregation.len496",
        "ladder.aggregation.len992",
    ]
    assert [c.id for c in large][1:3] == ["ladder.needle.len2032", "ladder.needle.len4064"]
    assert small[0].content_hash == large[0].content_hash  # a written case is the same
    for a, b in zip(small[1:], large[1:], strict=True):
        assert prompt_chars(b) > 3.5 * prompt_chars(a)
        assert a.content_hash != b.content_hash
    # Two models with one window are sent the same cases: one stored probe each.
    twins = select(
        config(a={"context_window": 2048}, b={"context_window": 2048}), suite, None, None
    )
    assert [c.content_hash for c in twins.cases["a"]] == [c.content_hash for c in small]
    assert [c.content_hash for c in twins.cases["b"]] == [c.content_hash for c in small]


def test_the_profiles_sampler_still_applies(suite: Suite) -> None:
    profile = {"context_window": 2048, "sampler": {"top_k": 0, "min_p": 0}}
    cases = select(config(m=profile), suite, None, None).cases["m"]
    assert cases[0].params.wire() == {"temperature": 1, "max_tokens": 32, "top_k": 0, "min_p": 0}
    assert all(c.params.wire() == {"temperature": 0, "max_tokens": 32} for c in cases[1:])


def test_a_model_without_a_window_skips_the_case_with_one_warning(suite: Suite) -> None:
    with structlog.testing.capture_logs() as logs:
        selection = select(config(known={"context_window": 2048}, unknown={}), suite, None, None)
    assert [c.id for c in selection.cases["unknown"]] == ["hello"]
    assert len(selection.cases["known"]) == 5
    assert logs == [
        {
            "event": "suite.case_skipped",
            "log_level": "warning",
            "suite": "lad",
            "case": "ladder",
            "model": "unknown",
            "reason": "the model's profile has no context_window and the case no fallback_window",
        }
    ]


def test_a_model_with_nothing_to_send_is_left_out_and_none_left_is_an_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "only.yaml"
    path.write_text(
        "suite: only\ncases:\n  - id: ladder\n    generator: {name: context_ladder}\n",
        encoding="utf-8",
    )
    [only] = load_suite_file(path)
    with structlog.testing.capture_logs() as logs:
        selection = select(config(known={"context_window": 2048}, unknown={}), only, None, None)
    assert [m.name for m in selection.models] == ["known"] and list(selection.cases) == ["known"]
    assert [entry["model"] for entry in logs] == ["unknown"]
    with pytest.raises(UsageError) as err:
        select(config(unknown={}), only, None, None)
    assert str(err.value) == (
        "suite 'only' has nothing to send to model 'unknown' (case 'ladder': the model's "
        "profile has no context_window and the case no fallback_window)"
    )


def test_a_window_too_small_for_a_model_is_one_error_naming_it(suite: Suite) -> None:
    with pytest.raises(ProbeFileError) as err:
        select(config(ok={"context_window": 2048}, tiny={"context_window": 160}), suite, None, None)
    assert err.value.field == "cases[1].generator.params.fractions"
    assert "case 'ladder' for model 'tiny' (window 160 from its profile.context_window)" in str(
        err.value
    )
    assert "\n" not in err.value.one_line()


@pytest.mark.slow  # a whole round: its writer process, a real HTTP provider
async def test_a_round_sends_and_stores_each_models_own_ladder(
    tmp_path: Path, suite: Suite
) -> None:
    db = tmp_path / "a.db"
    with RecordingProvider() as server:
        cfg = config(
            server.base_url,
            f"sqlite:///{db}",
            small={"context_window": 2048},
            large={"context_window": 8192},
            unknown={},
        )
        store = Store(make_engine(cfg.database))
        ensure_schema(store.engine)
        selection = select(cfg, suite, None, None)
        result = await run_round_async(
            cfg, store, selection, with_reference=False, score_likelihood=False
        )
        assert result.outcome.status == "complete"
        assert len(server.sent) == 2 * (3 + 4) + 3  # "unknown" is sent the written case only
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT p.model, s.probe_id, s.probe_hash, s.request_json FROM samples s "
            "JOIN providers p ON p.id = s.provider_id"
        ).fetchall()
        (suite_hash,) = conn.execute("SELECT suite_hash FROM rounds").fetchone()
    assert suite_hash == suite.hash
    for model in ("small", "large", "unknown"):
        sent = {(probe_id, probe_hash) for m, probe_id, probe_hash, _ in rows if m == model}
        assert sent == {(c.id, c.content_hash) for c in selection.cases[model]}, model
    prompts = {
        (m, probe_id): json.loads(body)["messages"][-1]["content"] for m, probe_id, _, body in rows
    }
    assert prompts[("small", "hello")] == prompts[("large", "hello")]
    small, large = (
        prompts[("small", "ladder.needle.len992")],
        prompts[("large", "ladder.needle.len4064")],
    )
    assert 3.5 * len(small) < len(large)


REASONING_SUITE = """
suite: think
defaults:
  params: {temperature: 0, max_tokens: 16}
cases:
  - {id: plain, prompt: "Capital of France?"}
  - {id: sum.low, prompt: "What is 17 + 25?", reasoning_effort: low}
  - {id: sum.high, prompt: "What is 17 + 25?", reasoning_effort: high}
  - {id: sum.max, prompt: "What is 17 + 25?", reasoning_effort: max}
"""


@pytest.fixture
def reasoning_suite(tmp_path: Path) -> Suite:
    path = tmp_path / "think.yaml"
    path.write_text(textwrap.dedent(REASONING_SUITE).lstrip(), encoding="utf-8")
    [loaded] = load_suite_file(path)
    return loaded


def test_a_reasoning_model_is_sent_its_levels_with_the_budget_added(
    reasoning_suite: Suite,
) -> None:
    profiles = {
        "thinker": {"reasoning": {"levels": ["low", "high"], "budget": 500}, "max_output": 400},
        "plain": {},
    }
    with structlog.testing.capture_logs() as logs:
        selection = select(config(**profiles), reasoning_suite, None, None)
    thinker = {c.id: c for c in selection.cases["thinker"]}
    assert sorted(thinker) == ["plain", "sum.high", "sum.low"]
    assert {c.params.max_tokens for c in thinker.values()} == {400}  # 16 + 500, cut to 400
    assert thinker["sum.low"].metadata["effort_rank"] == 0
    assert thinker["sum.high"].metadata["effort_rank"] == 1
    assert [c.id for c in selection.cases["plain"]] == ["plain"]
    assert selection.cases["plain"][0].params.max_tokens == 16
    skipped = {(e["model"], e["case"]): e["reason"] for e in logs}
    assert skipped[("thinker", "sum.max")] == (
        "it asks for reasoning effort 'max'; the model has no level 'max'"
    )
    assert skipped[("plain", "sum.low")] == (
        "it asks for reasoning effort 'low'; the model does not reason"
    )


def test_cases_without_an_effort_keep_their_hash(reasoning_suite: Suite) -> None:
    plain = reasoning_suite.case("plain")
    # the case as the first release hashed it: without the fields added since, unset
    data = plain.model_dump(mode="json", exclude={"description", "reasoning_effort", "stream"})
    for added in ("n", "presence_penalty", "frequency_penalty"):
        del data["params"][added]
    assert plain.content_hash == content_hash(data)
    assert (
        reasoning_suite.case("sum.low").content_hash
        != reasoning_suite.case("sum.high").content_hash
    )


@pytest.mark.slow  # a whole round: its writer process, a real HTTP provider
async def test_each_provider_is_sent_the_effort_its_own_way(
    tmp_path: Path, reasoning_suite: Suite
) -> None:
    db = tmp_path / "r.db"
    with RecordingProvider() as server:
        provider = {"base_url": server.base_url, "model": "m", "requests_per_second": 500}
        cfg = AuditorConfig.model_validate(
            {
                "database": f"sqlite:///{db}",
                "models": [
                    {
                        "name": "thinker",
                        "profile": {"reasoning": {"levels": ["low", "high"]}},
                        "providers": [
                            {"name": "direct", **provider},
                            {"name": "router", **provider,
                             "reasoning": {"parameter": "reasoning.effort"}},
                        ],
                    }
                ],
            }
        )  # fmt: skip
        store = Store(make_engine(cfg.database))
        ensure_schema(store.engine)
        selection = select(cfg, reasoning_suite, None, None)
        result = await run_round_async(
            cfg, store, selection, with_reference=False, score_likelihood=False
        )
        assert result.outcome.status == "complete"
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT p.name, s.probe_id, s.request_json FROM samples s "
            "JOIN providers p ON p.id = s.provider_id"
        ).fetchall()
    sent = {(name, probe): json.loads(body) for name, probe, body in rows}
    assert sent[("direct", "sum.high")]["reasoning_effort"] == "high"
    assert sent[("router", "sum.low")]["reasoning"] == {"effort": "low"}
    assert "reasoning_effort" not in sent[("router", "sum.low")]
    assert "reasoning_effort" not in sent[("direct", "plain")]
    assert sent[("direct", "plain")]["max_tokens"] == 16 + 1024  # the default budget
