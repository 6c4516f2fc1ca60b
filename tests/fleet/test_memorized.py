"""The `memorized` fault (a benchmark-tuned variant): listed prompts get their memorised
answers, the rest the model's; and, end to end, the perturbation gap test finds it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml
from auditor_fleet import DEFAULT_MODEL, FleetMember, FleetSpec, FleetSpecError
from auditor_fleet.memorized import load_answers, normalize
from auditor_fleet.process import FleetHandle, running_fleet
from auditor_fleet.spec import pick_members
from helpers.cli import provider, run_auditor, write_config
from helpers.pairs import PAIRS_SUITE

from auditor.comparisons.perturbation import perturbation_gap
from auditor.errors import UsageError
from auditor.probes import load_suite
from auditor.storage.db import make_engine
from auditor.storage.observations import load_observations
from auditor.storage.repository import Store

LISTED = "A shop sells 12 apples and 7 pears. How many fruits does it sell in total?"


@pytest.fixture(scope="module")
def echo_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetHandle]:
    answers = tmp_path_factory.mktemp("memorized") / "answers.yaml"
    answers.write_text(yaml.safe_dump({"What is 2 + 2? Answer with one number.": 5}))
    members = [
        FleetMember(name="honest", port=0),
        FleetMember(name="tuned", port=0, fault="memorized", memorized={LISTED: "19"}),
        FleetMember(name="filed", port=0, fault="memorized", memorized=answers),
    ]
    with running_fleet(FleetSpec(members=members, seed=1)) as handle:
        yield handle


def chat(fleet: FleetHandle, name: str, content: str, **kwargs: Any) -> Any:
    client = openai.OpenAI(base_url=fleet.base_url(name), api_key="x", max_retries=0, timeout=30)
    kwargs.setdefault("temperature", 0)
    return client.chat.completions.create(
        model=DEFAULT_MODEL, messages=[{"role": "user", "content": content}], **kwargs
    )


def test_listed_prompts_get_the_memorised_answer_and_others_the_model(
    echo_fleet: FleetHandle,
) -> None:
    tuned = chat(echo_fleet, "tuned", LISTED)
    assert tuned.choices[0].message.content == "19"
    assert tuned.choices[0].finish_reason == "stop"
    honest = chat(echo_fleet, "honest", LISTED)
    assert honest.choices[0].message.content != "19"
    # billed as the model bills the prompt; the answer counted in its tokens (echo: words)
    assert tuned.usage.prompt_tokens == honest.usage.prompt_tokens
    assert tuned.usage.completion_tokens == 1
    # whitespace does not hide a listed prompt; any other prompt is the model's
    spaced = chat(
        echo_fleet,
        "tuned",
        "  A shop sells 12 apples and 7 pears.\nHow many fruits does it sell in total?",
    )
    assert spaced.choices[0].message.content == "19"
    other = LISTED.replace("12", "13")
    assert (
        chat(echo_fleet, "tuned", other).choices[0].message.content
        == chat(echo_fleet, "honest", other).choices[0].message.content
    )
    # streamed, it comes whole at the end
    stream = chat(echo_fleet, "tuned", LISTED, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "19"


def test_answers_from_a_yaml_file(echo_fleet: FleetHandle) -> None:
    content = "What is 2 + 2? Answer with one number."
    assert chat(echo_fleet, "filed", content).choices[0].message.content == "5"
    assert chat(echo_fleet, "honest", content).choices[0].message.content == "4"


def test_spec_needs_the_answers_and_reads_them(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="memorized needs its answers"):
        FleetMember(name="m", port=0, fault="memorized")
    with pytest.raises(UsageError, match="memorized needs its answers"):
        pick_members(FleetSpec(members=[FleetMember(name="a", port=0)]), ["memorized"])
    assert load_answers({" a  b ": "1", "c": 2}) == {"a b": "1", "c": "2"}
    assert FleetMember(name="m", port=0, fault="memorized", memorized={"c": 2}).memorized == {
        "c": 2
    }
    assert normalize(" x\n y ") == "x y"
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(FleetSpecError, match="expected a mapping of prompt: answer"):
        load_answers(bad)
    with pytest.raises(FleetSpecError, match="file not found"):
        load_answers(tmp_path / "missing.yaml")
    # through JSON (how `auditor fleet up` hands a spec to its process) the file stays a path
    member = FleetMember(name="m", port=0, fault="memorized", memorized=bad)
    again = FleetMember.model_validate(json.loads(member.model_dump_json()))
    assert again.memorized == bad


# --- end to end: the real model, the reference engine, the detector ----------------------


@pytest.mark.slow
@pytest.mark.model
def test_the_perturbation_gap_finds_a_provider_that_memorised_the_originals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    probes = tmp_path / "probes"
    probes.mkdir()
    (probes / "pairs.yaml").write_text(yaml.safe_dump(PAIRS_SUITE, sort_keys=False))
    suite = load_suite("pairs", probes)
    # the benchmark's answer key: the originals' right answers, in the model's own style
    key = {
        case.messages[-1].content: f"The answer is {case.expect.number:g}."
        for case in suite.cases
        if case.metadata["role"] == "original"
    }
    monkeypatch.setenv("AUDITOR_FLEET_THREADS", "1")  # the reference runs beside it
    members = [
        FleetMember(name="honest", port=0, backend="llama"),
        FleetMember(name="tuned", port=0, backend="llama", fault="memorized", memorized=key),
    ]
    with running_fleet(FleetSpec(members=members, seed=5), timeout_s=120) as fleet:
        providers = [
            provider(name, fleet.base_url(name), max_concurrency=1, timeout_s=60)
            for name in ("honest", "tuned")
        ]
        config = write_config(
            tmp_path,
            providers,
            f"sqlite:///{tmp_path / 'auditor.db'}",
            suites=["pairs"],
            probes_dir="probes",
            reference={
                "engine": "llama_cpp",
                "model_path": "packaged",
                "n_ctx": 2048,
                "n_threads": 1,
            },
        )
        result = run_auditor("run", "-c", str(config), "--no-progress", cwd=tmp_path)
        assert result.returncode == 0, result.stderr

    store = Store(make_engine(f"sqlite:///{tmp_path / 'auditor.db'}"))
    (round_id,) = [r.id for r in store.rounds(limit=1)]
    observations = load_observations(store, round_id)
    reference = [o for o in observations if o.kind == "reference"]
    assert len(reference) == 30 and all(o.ok for o in reference)
    originals = [o for o in reference if o.case["metadata"]["role"] == "original"]
    assert sum(o.scores["expect_pass"] or 0 for o in originals) <= 2  # the model fails most

    found = {}
    for name in ("honest", "tuned"):
        answers = [o for o in observations if o.endpoint == name]
        (found[name],) = perturbation_gap(reference, answers)
    tuned, honest = found["tuned"].result, found["honest"].result
    assert tuned.status == "tested" and tuned.n == 30
    assert tuned.p_value is not None and tuned.p_value < 0.05
    assert tuned.effect is not None and tuned.effect > 0.5
    assert honest.p_value is not None and honest.p_value > 0.05
    # Through the whole detector (every test, Benjamini-Hochberg): a benchmark-tuned variant.
    findings = {f.provider: f for f in store.findings(round_id)}
    assert findings["honest"].verdict == "consistent"
    assert findings["tuned"].verdict == "deviant"
    assert findings["tuned"].diagnoses[0].kind == "model_variant"
    assert "perturbed twins" in findings["tuned"].diagnoses[0].summary
