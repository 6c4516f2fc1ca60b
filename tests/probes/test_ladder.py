"""The context ladder: right answers planted, lengths on target, deterministic, strict params."""

from __future__ import annotations

import itertools
import json
import re
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from auditor.config import ModelProfile
from auditor.errors import ProbeFileError
from auditor.probes import generators, load_suite, load_suite_file
from auditor.probes.generators import CHARS_PER_TOKEN
from auditor.probes.ladder import ANSWER_ALLOWANCE, FREQUENCY_RATIO, TASKS

DEFAULT_IDS = [
    f"{task}.len{tokens}" for task in TASKS for tokens in (124, 248, 496, 992, 1488, 1885)
]


def ladder(params: dict[str, Any]) -> list[dict[str, Any]]:
    return generators.get("context_ladder")().generate({"id": "l"}, params)


def one_task(task: str, **params: Any) -> list[dict[str, Any]]:
    return ladder({"window": 2048, "tasks": [task], **params})


def matches(case: dict[str, Any], answer: str) -> bool:
    return re.search(case["expect"]["regex"], answer, re.IGNORECASE) is not None


def body(prompt: str) -> str:
    """The text between the instructions and the question."""
    return prompt.split("\n\n", 1)[1].rsplit("\n\nQuestion:", 1)[0]


# --- the ladder -----------------------------------------------------------------------


def test_default_ladder_ids_rungs_and_metadata() -> None:
    cases = ladder({"window": 2048})
    assert [c["id"] for c in cases] == DEFAULT_IDS
    for case in cases:
        meta = case["metadata"]
        assert meta["generator"] == "context_ladder" and meta["window"] == 2048
        assert meta["task"] == case["id"].split(".")[0]
        assert meta["target_tokens"] == round(meta["fraction"] * (2048 - ANSWER_ALLOWANCE))
        assert meta["fraction"] == [1 / 16, 1 / 8, 1 / 4, 1 / 2, 3 / 4, 0.95][meta["rung"]]
        assert meta["prompt_chars"] == len(case["prompt"])
        assert case["signals"] == ["long_context"]
        assert set(case["expect"]) == {"regex"}
    # The longest rung leaves the allowance free for the chat template and the answer.
    assert max(c["metadata"]["target_tokens"] for c in cases) + ANSWER_ALLOWANCE <= 2048


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("window", [2048, 32768])
def test_prompts_grow_with_the_rungs_and_land_near_their_target(task: str, window: int) -> None:
    cases = ladder({"window": window, "tasks": [task], "seed": 3})
    lengths = [len(c["prompt"]) for c in cases]
    assert lengths == sorted(lengths) and len(set(lengths)) == len(lengths)
    for case in cases:
        target_chars = case["metadata"]["target_tokens"] * CHARS_PER_TOKEN
        assert abs(len(case["prompt"]) - target_chars) <= 0.15 * target_chars, case["id"]


def test_fractions_are_sorted_and_short_rungs_skipped() -> None:
    cases = one_task("needle", fractions=[0.5, 0.1, 0.25], min_tokens=200)
    assert [c["id"] for c in cases] == ["needle.len496", "needle.len992"]
    assert [c["metadata"]["rung"] for c in cases] == [1, 2]  # rung 0 (198 tokens) is skipped


def test_a_rung_too_short_for_the_planted_lines_is_left_out_for_that_task() -> None:
    cases = ladder({"window": 2048, "tasks": ["needle", "multikey"], "keys": 64})
    ids = [c["id"] for c in cases]
    assert ids[:6] == DEFAULT_IDS[:6]
    assert ids[6:] == ["multikey.len992", "multikey.len1488", "multikey.len1885"]


def test_deterministic_by_seed() -> None:
    params = {"window": 4096, "seed": 5}
    first = ladder(params)
    assert first == ladder(dict(params))
    other = ladder({**params, "seed": 6})
    assert [c["id"] for c in other] == [c["id"] for c in first]
    assert all(a["prompt"] != b["prompt"] for a, b in zip(first, other, strict=True))


def test_instances_are_independent_draws_and_the_first_is_the_seeds_own() -> None:
    params = {"window": 2048, "tasks": ["needle", "multikey"], "seed": 3}
    single = ladder(params)
    several = ladder({**params, "instances": 3})
    assert len(several) == 3 * len(single)
    by_id = {c["id"]: c for c in several}
    for case in single:
        first = by_id[f"{case['id']}.i0"]
        assert first["prompt"] == case["prompt"] and first["metadata"]["instance"] == 0
        others = [by_id[f"{case['id']}.i{i}"] for i in (1, 2)]
        answers = {str(c["metadata"]["answer"]) for c in (first, *others)}
        assert len(answers) == 3, "each instance plants its own answer"
        assert len({c["prompt"] for c in (first, *others)}) == 3
        for other in others:  # the same rung: the same target, a similar length
            assert other["metadata"]["target_tokens"] == case["metadata"]["target_tokens"]
            assert abs(len(other["prompt"]) - len(case["prompt"])) < 0.1 * len(case["prompt"]) + 100
            assert matches(other, str(other["metadata"]["answer"]))
    assert "instance" not in single[0]["metadata"], "one instance: metadata as before"


@pytest.mark.parametrize("task", ["needle", "multikey", "variable_tracking"])
def test_a_shorter_rungs_filler_is_the_start_of_a_longer_rungs(task: str) -> None:
    planted = re.compile(r"(The secret code|The special magic number|VAR )[^.]*\.")
    fillers = [" ".join(planted.sub("", body(c["prompt"])).split()) for c in one_task(task)]
    for shorter, longer in itertools.pairwise(fillers):
        assert longer.startswith(shorter)


# --- the tasks ------------------------------------------------------------------------


@pytest.mark.parametrize(("depths", "at"), [(None, 0.0), ([0.5], 0.5), ([1.0], 1.0)])
def test_needle_answer_is_planted_once_at_its_depth_and_nowhere_else(
    depths: list[float] | None, at: float
) -> None:
    for case in one_task("needle", seed=1, **({"depths": depths} if depths else {})):
        code = case["metadata"]["answer"]
        text = body(case["prompt"])
        match = re.search(rf"The secret code of the (\w+) door is {code}\.", text)
        assert match is not None and case["metadata"]["depth"] == at
        assert abs(match.start() / len(text) - at) < 0.15
        assert re.findall(r"\d+", case["prompt"]) == [str(code)]
        assert case["prompt"].endswith(
            f"What is the secret code of the {match.group(1)} door? Answer with the number only."
        )
        assert matches(case, f"{code}") and matches(case, f"The code is {code}.")
        assert not matches(case, f"{code}7") and not matches(case, f"{(code + 1) % 10000}")


def test_the_default_needle_is_lost_to_any_cut_from_the_start() -> None:
    """A host that keeps only the end of a prompt loses the needle as soon as it cuts more than
    the instructions and the needle's own line: at every rung, not only where the cut reaches
    mid-text (a needle at depth 0.5 survived cuts of up to half a prompt)."""
    for case in one_task("needle", instances=6):
        code = str(case["metadata"]["answer"])
        start = case["prompt"].index(code)
        assert case["prompt"].startswith("Below is a long text.")
        assert start < 150, "within the first ~40 tokens"
        for kept in (len(case["prompt"]) - start - 1, len(case["prompt"]) // 2, 200):
            assert code not in case["prompt"][-kept:]


def test_at_depth_0_a_shorter_rungs_needle_prompt_is_the_start_of_a_longer_rungs() -> None:
    """What lets an engine reuse a shorter rung's evaluation: the same needle at every rung of
    an instance, then the same filler."""
    for instance in range(3):
        cases = [
            c for c in one_task("needle", instances=3) if c["metadata"]["instance"] == instance
        ]
        heads = [c["prompt"].rsplit("\n\nQuestion:", 1)[0] for c in cases]
        assert len({c["metadata"]["answer"] for c in cases}) == 1
        for shorter, longer in itertools.pairwise(heads):
            assert longer.startswith(shorter)


def test_the_instances_take_the_needle_depths_in_turn() -> None:
    cases = one_task("needle", instances=5, depths=[0.0, 0.5], fractions=[0.5])
    assert [c["metadata"]["depth"] for c in cases] == [0.0, 0.5, 0.0, 0.5, 0.0]
    for case in cases:
        text = body(case["prompt"])
        position = text.index(str(case["metadata"]["answer"])) / len(text)
        assert abs(position - case["metadata"]["depth"]) < 0.1


def test_multikey_asks_one_of_several_distinct_keys() -> None:
    for case in one_task("multikey", keys=6, seed=2):
        lines = re.findall(
            r"The special magic number for ([a-z]+-[a-z]+) is (\d+)\.", case["prompt"]
        )
        assert len(lines) == 6 == case["metadata"]["keys"]
        keys, numbers = zip(*lines, strict=True)
        assert len(set(keys)) == 6 and len(set(numbers)) == 6
        asked = re.search(r"special magic number for ([a-z-]+)\?", case["prompt"])
        assert asked is not None
        answer = dict(lines)[asked.group(1)]
        assert str(case["metadata"]["answer"]) == answer
        assert matches(case, answer) and matches(case, f"The number is {answer}.")
        for other in set(numbers) - {answer}:
            assert not matches(case, other)


def resolve(statements: list[tuple[str, str]], name: str) -> str:
    assigned = dict(statements)
    while not assigned[name].isdigit():
        name = assigned[name]
    return assigned[name]


def test_variable_tracking_follows_the_chain_not_the_decoy() -> None:
    for hops in (1, 3, 5):
        for case in one_task("variable_tracking", hops=hops, seed=4, fractions=[0.5, 0.95]):
            statements = re.findall(r"VAR ([A-Z]{5}) = (\w+)\.", case["prompt"])
            assert len(statements) == 2 * (hops + 1)
            asked = re.search(r"what number does VAR ([A-Z]{5}) hold\?", case["prompt"])
            assert asked is not None
            answer, decoy = str(case["metadata"]["answer"]), str(case["metadata"]["decoy"])
            assert resolve(statements, asked.group(1)) == answer != decoy
            # Each variable is assigned after the one it copies.
            seen: set[str] = set()
            for name, value in statements:
                assert value.isdigit() or value in seen
                seen.add(name)
            assert sum(1 for _, value in statements if value.isdigit()) == 2
            assert matches(case, answer) and matches(case, f"VAR X holds {answer}.")
            assert not matches(case, decoy) and not matches(case, asked.group(1))


@pytest.mark.parametrize("words", [1, 3, 5])
def test_aggregation_counts_are_well_separated_and_the_regex_needs_all_words(words: int) -> None:
    for case in one_task("aggregation", words=words, seed=6):
        counts = Counter(body(case["prompt"]).split())
        top = case["metadata"]["answer"]
        assert sorted(w for w, _ in counts.most_common(words)) == top
        others = [n for w, n in counts.items() if w not in top]
        assert others and min(counts[w] for w in top) >= FREQUENCY_RATIO * max(others)
        assert case["metadata"]["top_count"] == counts[top[0]]
        assert case["metadata"]["other_max_count"] == max(others)

        for order in itertools.islice(itertools.permutations(top), 6):
            assert matches(case, ", ".join(order))
        said = f"The {words} most frequent words in the list are {', '.join(top).upper()}."
        assert matches(case, said)
        runner_up = next(w for w, _ in counts.most_common() if w not in top)
        if words > 1:
            assert not matches(case, ", ".join(top[:-1]))
        assert not matches(case, ", ".join([*top[:-1], runner_up]))
        assert not matches(case, " ".join(counts))  # every word of the list
        assert not matches(case, top[0] + "s")


# --- params, through the suite loader -------------------------------------------------


def write_suite(tmp_path: Path, params: dict[str, Any]) -> Path:
    lines = "".join(f"        {key}: {json.dumps(value)}\n" for key, value in params.items())
    path = tmp_path / "ladder.yaml"
    path.write_text(
        "suite: s\n"
        "cases:\n"
        "  - id: ladder\n"
        "    generator:\n"
        "      name: context_ladder\n"
        "      params:\n" + lines,
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize(
    ("params", "field", "line", "fragment"),
    [
        ({"window": 2048, "fractions": [0, 0.5]}, "fractions[0]", 8, "greater than 0"),
        ({"window": 2048, "fractions": [0.5, 1.5]}, "fractions[1]", 8, "less than or equal to 1"),
        ({"window": 2048, "fractions": [0.5, 0.25, 0.5]}, "fractions", 8, "0.5 is given twice"),
        ({"window": 2048, "tasks": ["needle", "haystack"]}, "tasks[1]", 8, "'aggregation'"),
        ({"window": 2048, "tasks": ["needle", "needle"]}, "tasks", 8, "given twice"),
        ({"window": 128}, "fractions", 7, "no rung reaches min_tokens (64)"),
        ({"window": 64}, "window", 7, "greater than or equal to 128"),
        # `window` left out (each model's profile.context_window): the rest checked at load.
        ({"fractions": [0.5, 1.5]}, "fractions[1]", 7, "less than or equal to 1"),
        ({"tasks": ["haystack"]}, "tasks[0]", 7, "'aggregation'"),
        ({"hop": 2}, "hop", 7, "unknown key"),
        ({"fallback_window": 64}, "fallback_window", 7, "greater than or equal to 128"),
        ({"fallback_window": 128}, "fractions", 7, "no rung reaches min_tokens (64)"),
        ({"window": 2048, "fallback_window": 4096}, "fallback_window", 8, "leaves out window"),
        ({"window": 2048, "keys": 65}, "keys", 8, "less than or equal to 64"),
        ({"window": 2048, "instances": 0}, "instances", 8, "greater than or equal to 1"),
        ({"window": 2048, "depths": [0.5, 1.5]}, "depths[1]", 8, "less than or equal to 1"),
        ({"window": 2048, "depths": []}, "depths", 8, "at least 1 item"),
        ({"window": 2048, "hop": 2}, "hop", 8, "unknown key"),
        ({"window": 900, "tasks": ["multikey"], "keys": 64}, "keys", 9, "with keys 64 does not"),
        (
            {"window": 200_000, "fractions": [0.5, 0.500001]},
            "fractions",
            8,
            "both give 99968 tokens",
        ),
    ],
)
def test_bad_params_give_one_line_naming_the_param(
    tmp_path: Path, params: dict[str, Any], field: str, line: int, fragment: str
) -> None:
    path = write_suite(tmp_path, params)
    with pytest.raises(ProbeFileError) as err:
        load_suite_file(path)
    e = err.value
    assert (e.field, e.line) == (f"cases[0].generator.params.{field}", line), str(e)
    assert fragment in e.message, str(e)
    assert e.one_line() == f"{path}:{line}: {e.field}: {e.message}"
    assert "\n" not in e.one_line()


def test_a_suite_file_with_a_ladder_loads(tmp_path: Path) -> None:
    path = tmp_path / "long.yaml"
    path.write_text(
        textwrap.dedent(
            """
            suite: long
            defaults:
              params: {temperature: 0, max_tokens: 32}
            cases:
              - id: short
                prompt: "Say hi."
              - id: ladder
                tags: [ladder]
                generator:
                  name: context_ladder
                  params: {window: 4096, fractions: [0.25, 0.5], tasks: [needle, aggregation]}
            """
        ).lstrip(),
        encoding="utf-8",
    )
    [suite] = load_suite_file(path)
    assert [c.id for c in suite.cases] == [
        "short",
        "ladder.needle.len1008",
        "ladder.needle.len2016",
        "ladder.aggregation.len1008",
        "ladder.aggregation.len2016",
    ]
    for case in suite.cases[1:]:
        assert case.params.wire() == {"temperature": 0, "max_tokens": 32}
        assert case.signals == ["long_context"] and case.tags == ["ladder"]
        assert case.expect is not None and case.expect.regex
        assert case.metadata["generator"] == "context_ladder"
        assert [m.role for m in case.messages] == ["user"]


def test_the_shipped_ladder_suite_takes_each_models_window() -> None:
    suite = load_suite("ladder", Path(__file__).resolve().parents[2] / "probes")
    assert suite.cases == [] and [e.id for e in suite.per_model] == ["ladder"]
    cases, skipped = suite.cases_for("smollm2-135m-instruct", ModelProfile(context_window=8192))
    assert skipped == [] and len(cases) == 72  # 2 tasks x 6 instances x 6 rungs
    assert {c.metadata["task"] for c in cases} == {"needle", "multikey"}
    assert {c.metadata["instance"] for c in cases} == set(range(6))
    for case in cases:
        assert case.params.wire() == {"temperature": 0, "max_tokens": 32}
        assert case.params.max_tokens is not None and case.params.max_tokens <= ANSWER_ALLOWANCE
        assert case.samples == 1 and case.signals == ["long_context"]
        assert case.metadata["window"] == 8192
    per_rung = Counter(c.metadata["target_tokens"] for c in cases)
    assert len(per_rung) == 6 and set(per_rung.values()) == {12}, "12 draws a rung"
    # About 2.6 windows of prompt per task and instance: 258,000 tokens a round at 8,192.
    tokens = sum(c.metadata["target_tokens"] * c.samples for c in cases)
    assert 250_000 < tokens < 262_000
    # The same 72 cases at any window from 1,200 tokens up (probes/README.md says so).
    assert len(suite.cases_for("m", ModelProfile(context_window=1200)).cases) == 72
    assert len(suite.cases_for("m", ModelProfile(context_window=1192)).cases) < 72
    assert suite.cases_for("m", ModelProfile()).skipped[0][0] == "ladder"
