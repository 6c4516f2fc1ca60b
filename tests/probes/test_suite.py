"""Suite files: loading, defaults, hashing, request expansion and one-line errors."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest

from auditor.config import ModelProfile
from auditor.errors import ProbeFileError, UsageError
from auditor.probes import (
    ProbeGenerator,
    Suite,
    expand_requests,
    generators,
    load_suite,
    load_suite_file,
    load_suites,
    validate_path,
)

PROBES = Path(__file__).resolve().parents[2] / "probes"


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def load_one(path: Path) -> Suite:
    [suite] = load_suite_file(path)
    return suite


# --- the real core suite ------------------------------------------------------------


@pytest.fixture(scope="module")
def core() -> Suite:
    return load_suite("core", PROBES)


def test_core_suite_is_large_unique_and_cheap(core: Suite) -> None:
    ids = [c.id for c in core.cases]
    assert len(ids) >= 30
    assert len(set(ids)) == len(ids)
    assert all(c.suite == "core" for c in core.cases)
    for case in core.cases:
        assert case.params.max_tokens is not None and case.params.max_tokens <= 64, case.id
        prompt_chars = sum(len(m.content or "") for m in case.messages)
        assert prompt_chars / 4 <= 1600, case.id


def test_core_suite_covers_the_probe_kinds(core: Suite) -> None:
    def with_signal(signal: str) -> list[Any]:
        return [c for c in core.cases if signal in c.signals]

    kinds = {c.expect.kind for c in core.cases if c.expect is not None}
    assert kinds == {"exact", "regex", "number", "json_schema"}
    assert any(c.expect is None for c in with_signal("tone"))
    assert any(m.role == "assistant" for c in with_signal("multi_turn") for m in c.messages)
    password = core.case("system-password")
    assert password.messages[0].role == "system" and "TANGERINE" in password.messages[0].content
    assert password.expect is not None and password.expect.regex == "TANGERINE"
    sampled = with_signal("sampling")
    assert sampled and all(c.samples >= 3 and c.params.temperature == 1 for c in sampled)
    assert any(c.params.max_tokens == 64 for c in with_signal("max_tokens"))
    needles = [c for c in core.cases if c.id.startswith("needle.")]
    assert len({c.metadata["length"] for c in needles}) >= 2
    assert max(c.metadata["length"] for c in needles) <= 1500
    groups = {c.group for c in with_signal("perturbation")}
    assert len(groups) >= 2


def test_core_hash_is_stable_and_tracks_content(tmp_path: Path) -> None:
    first = load_suite("core", PROBES).hash
    assert load_suite("core", PROBES).hash == first
    shutil.copy(PROBES / "core.yaml", tmp_path / "core.yaml")
    assert load_suite("core", tmp_path).hash == first

    text = (tmp_path / "core.yaml").read_text()
    edited = text.replace("What is 17 + 25?", "What is 17 + 26?")
    assert edited != text
    (tmp_path / "core.yaml").write_text(edited)
    assert load_suite("core", tmp_path).hash != first


def test_hash_ignores_descriptions_and_file_split(tmp_path: Path) -> None:
    one = tmp_path / "one"
    one.mkdir()
    write(
        one / "s.yaml",
        """
        suite: s
        cases:
          - {id: a, prompt: hi, description: first words}
          - {id: b, prompt: there}
        """,
    )
    two = tmp_path / "two"
    two.mkdir()
    write(two / "s1.yaml", "suite: s\ndescription: x\ncases:\n  - {id: a, prompt: hi}\n")
    write(two / "s2.yaml", "suite: s\ncases:\n  - {id: b, prompt: there}\n")
    merged = load_suite("s", two)
    assert merged.hash == load_suite("s", one).hash
    assert [c.id for c in merged.cases] == ["a", "b"]
    assert merged.files == [str(two / "s1.yaml"), str(two / "s2.yaml")]
    assert merged.description == "x"


def test_expand_requests_one_per_sample_in_stable_order(core: Suite) -> None:
    requests = expand_requests(core)
    assert len(requests) == sum(c.samples for c in core.cases)
    assert [(r.probe_id, r.sample_index) for r in requests] == [
        (c.id, k) for c in core.cases for k in range(c.samples)
    ]
    by_id = {c.id: c for c in core.cases}
    assert all(r.probe_hash == by_id[r.probe_id].content_hash for r in requests)
    again = expand_requests(load_suite("core", PROBES))
    assert [r.model_dump() for r in again] == [r.model_dump() for r in requests]


# --- the format ---------------------------------------------------------------------


def test_defaults_merge_and_shorthand(tmp_path: Path) -> None:
    path = write(
        tmp_path / "s.yaml",
        """
        suite: s
        defaults:
          params: {temperature: 0, max_tokens: 48}
          samples: 2
          signals: [greedy]
        cases:
          - id: a
            system: Be brief.
            prompt: Hello
            params: {max_tokens: 8}
          - id: b
            messages:
              - {role: user, content: One}
              - {role: assistant, content: Two}
              - {role: user, content: "Three?"}
            samples: 5
            signals: [multi_turn]
            params: {temperature: null}
        """,
    )
    a, b = load_one(path).cases
    assert [(m.role, m.content) for m in a.messages] == [("system", "Be brief."), ("user", "Hello")]
    assert a.params.wire() == {"temperature": 0, "max_tokens": 8}
    assert (a.samples, a.signals) == (2, ["greedy"])
    assert [m.role for m in b.messages] == ["user", "assistant", "user"]
    assert b.params.wire() == {"max_tokens": 48}
    assert (b.samples, b.signals) == (5, ["multi_turn"])


def test_generator_cases_inherit_the_template(tmp_path: Path) -> None:
    path = write(
        tmp_path / "s.yaml",
        """
        suite: s
        defaults:
          params: {temperature: 0, max_tokens: 48}
        cases:
          - id: hay
            system: You answer briefly.
            params: {max_tokens: 12}
            signals: [greedy]
            tags: [long]
            generator: {name: needle, params: {lengths: [128, 256], depths: [0.5], seed: 3}}
        """,
    )
    cases = load_one(path).cases
    assert [c.id for c in cases] == ["hay.len128.d0.50", "hay.len256.d0.50"]
    for case in cases:
        assert (
            case.messages[0].role == "system" and case.messages[0].content == "You answer briefly."
        )
        assert case.params.wire() == {"temperature": 0, "max_tokens": 12}
        assert case.signals == ["greedy", "long_context"]
        assert case.tags == ["long"]
        assert case.expect is not None and case.expect.regex


def test_third_party_generator_registers_like_a_builtin(tmp_path: Path) -> None:
    @generators.register("test_echo_twice")
    class EchoTwice(ProbeGenerator):
        def generate(self, template: dict[str, Any], params: dict[str, Any]) -> list[dict]:
            return [{"id": f"n{i}", "prompt": params["word"] * i} for i in (1, 2)]

    path = write(
        tmp_path / "s.yaml",
        """
        suite: s
        cases:
          - id: echo
            generator: {name: test_echo_twice, params: {word: ha}}
        """,
    )
    cases = load_one(path).cases
    assert [(c.id, c.messages[-1].content) for c in cases] == [
        ("echo.n1", "ha"),
        ("echo.n2", "haha"),
    ]


def test_unknown_suite_and_missing_directory(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "suite: alpha\ncases:\n  - {id: a, prompt: hi}\n")
    write(tmp_path / "b.yaml", "suite: beta\ncases:\n  - {id: a, prompt: hi}\n")
    with pytest.raises(UsageError) as err:
        load_suite("gamma", tmp_path)
    # the shipped suites join the directory's
    known = "alpha, beta, core, deep, demo, demo-params, demo-reasoning, ladder, params, tools"
    assert f"unknown suite 'gamma' in {tmp_path.as_posix()}/ (known: {known})" == str(err.value)
    with pytest.raises(ProbeFileError, match="not found"):
        load_suites(tmp_path / "nope")
    assert sorted(s.name for s in validate_path(tmp_path)) == ["alpha", "beta"]
    assert [s.name for s in validate_path(tmp_path / "a.yaml")] == ["alpha"]


def test_shipped_suites_come_with_the_package_and_a_directory_takes_precedence(
    tmp_path: Path,
) -> None:
    shipped = load_suites(None)
    assert {"core", "demo", "deep", "tools"} <= set(shipped)
    assert shipped["core"].hash == load_suites(PROBES, packaged=False)["core"].hash
    write(tmp_path / "mine.yaml", "suite: core\ncases:\n  - {id: only, prompt: hi}\n")
    mine = load_suites(tmp_path)
    assert [c.id for c in mine["core"].cases] == ["only"]  # the directory's own `core`
    assert mine["demo"].hash == shipped["demo"].hash


def test_duplicate_id_across_files_names_the_second_file(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "suite: s\ncases:\n  - {id: x, prompt: hi}\n")
    write(
        tmp_path / "b.yaml", "suite: s\ncases:\n  - {id: y, prompt: hi}\n  - {id: x, prompt: yo}\n"
    )
    with pytest.raises(ProbeFileError) as err:
        load_suites(tmp_path)
    e = err.value
    assert (e.path, e.line, e.field) == (str(tmp_path / "b.yaml"), 4, "cases[1].id")
    assert "first at" in e.message and "a.yaml:3" in e.message


BASE = """\
suite: t
cases:
  - id: a
    prompt: "What is 1 + 1?"
    expect: {number: 2}
  - id: b
    prompt: "hello"
"""

BAD_FILES = {
    # name: (replace this, with this, field, line, message fragment)
    "malformed yaml": ('prompt: "hello"', "prompt: hello: world", None, 7, "invalid YAML"),
    "unknown key": (
        'prompt: "hello"',
        'prompt: "hello"\n    colour: red',
        "cases[1].colour",
        8,
        "unknown key",
    ),
    "unknown top-level key": ("suite: t", "suite: t\nversion: 2", "version", 2, "unknown key"),
    "wrong type": (
        'prompt: "hello"',
        'prompt: "hello"\n    samples: many',
        "cases[1].samples",
        8,
        "integer",
    ),
    "wrong param type": (
        'prompt: "hello"',
        'prompt: "hello"\n    params: {max_tokens: lots}',
        "cases[1].params.max_tokens",
        8,
        "integer",
    ),
    "expect two kinds": (
        "expect: {number: 2}",
        'expect: {number: 2, exact: "2"}',
        "cases[0].expect",
        5,
        "expect needs exactly one of exact, regex, number, json_schema",
    ),
    "expect no kind": (
        "expect: {number: 2}",
        "expect: {tolerance: 1}",
        "cases[0].expect",
        5,
        "exactly one",
    ),
    "bad regex": (
        "expect: {number: 2}",
        'expect: {regex: "(("}',
        "cases[0].expect.regex",
        5,
        "invalid regular expression",
    ),
    "bad schema": (
        "expect: {number: 2}",
        "expect: {json_schema: {type: 5}}",
        "cases[0].expect.json_schema",
        5,
        "invalid JSON Schema",
    ),
    "duplicate id": ("id: b", "id: a", "cases[1].id", 6, "duplicate case id 'a'"),
    "unknown generator": (
        'prompt: "hello"',
        "generator: {name: nope}",
        "cases[1].generator.name",
        7,
        "unknown probe generator 'nope'",
    ),
    "bad generator param": (
        'prompt: "hello"',
        "generator:\n      name: needle\n      params: {lengths: [8], depths: [0.5]}",
        "cases[1].generator.params.lengths[0]",
        9,
        "greater than or equal to 64",
    ),
    "generator param key": (
        'prompt: "hello"',
        "generator:\n      name: perturbed_arithmetic\n"
        '      params: {problem: "{a}?", answer: "a ** 2", values: {a: 1}}',
        "cases[1].generator.params.answer",
        9,
        "only integers",
    ),
    "generator with prompt": (
        'prompt: "hello"',
        'prompt: "hello"\n    generator: {name: needle, params: {lengths: [100], depths: [0.5]}}',
        "cases[1].prompt",
        7,
        "generator",
    ),
    "prompt and messages": (
        'prompt: "hello"',
        'prompt: "hello"\n    messages: [{role: user, content: hi}]',
        "cases[1].messages",
        8,
        "either system/prompt or messages",
    ),
    "system without prompt": (
        'prompt: "hello"',
        "system: be nice",
        "cases[1].system",
        7,
        "needs a prompt",
    ),
    "no prompt at all": ('prompt: "hello"', "samples: 2", "cases[1]", 6, "needs a prompt"),
    "bad role": (
        'prompt: "hello"',
        "messages: [{role: bot, content: hi}]",
        "cases[1].messages[0].role",
        7,
        "'user'",
    ),
    "no user message": (
        'prompt: "hello"',
        "messages: [{role: system, content: hi}]",
        "cases[1].messages",
        7,
        "user message",
    ),
    "bad id": ("id: b", 'id: "b c"', "cases[1].id", 6, "letters, digits"),
    "duplicate yaml key": (
        'prompt: "hello"',
        'prompt: "hello"\n    prompt: "again"',
        "cases[1].prompt",
        8,
        "duplicate key",
    ),
    "missing suite": ("suite: t\n", "", "suite", 1, "required key"),
    "generated id clash": (
        "id: a",
        "id: n.len128.d0.50",
        "cases[1].generator",
        7,
        "duplicate case id",
    ),
}


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_bad_file_gives_one_line_with_field_and_line(tmp_path: Path, kind: str) -> None:
    old, new, field, line, fragment = BAD_FILES[kind]
    text = BASE.replace(old, new, 1)
    if kind == "generated id clash":
        text = text.replace(
            'prompt: "hello"', "generator: {name: needle, params: {lengths: [128], depths: [0.5]}}"
        )
        text = text.replace("id: b", "id: n")
    assert text != BASE
    path = tmp_path / "t.yaml"
    path.write_text(text)
    with pytest.raises(ProbeFileError) as err:
        load_suite_file(path)
    e = err.value
    assert e.field == field, str(e)
    assert e.line == line, str(e)
    assert fragment in e.message, str(e)
    where = str(path) if line is None else f"{path}:{line}"
    assert e.one_line() == (f"{where}: {field}: {e.message}" if field else f"{where}: {e.message}")
    assert "\n" not in e.one_line()


def test_not_a_mapping_and_empty_file(tmp_path: Path) -> None:
    for text in ("", "- a\n- b\n", "just text\n"):
        path = tmp_path / "t.yaml"
        path.write_text(text)
        with pytest.raises(ProbeFileError, match="expected a mapping"):
            load_suite_file(path)


def test_generator_producing_a_bad_case_points_at_the_generator(tmp_path: Path) -> None:
    @generators.register("test_bad_cases")
    class Bad(ProbeGenerator):
        def generate(self, template: dict[str, Any], params: dict[str, Any]) -> list[dict]:
            return [{"id": "x", "prompt": "hi", "samples": 0}]

    path = write(
        tmp_path / "s.yaml",
        """
        suite: s
        cases:
          - id: g
            generator: {name: test_bad_cases}
        """,
    )
    with pytest.raises(ProbeFileError) as err:
        load_suite_file(path)
    assert (err.value.field, err.value.line) == ("cases[0].generator", 4)
    assert "generated case 'g.x': samples:" in err.value.message


def test_generated_values_of_the_wrong_type_are_reported_not_raised(tmp_path: Path) -> None:
    @generators.register("test_wrong_types")
    class WrongTypes(ProbeGenerator):
        def generate(self, template: dict[str, Any], params: dict[str, Any]) -> list[dict]:
            return [{"id": "x", "prompt": "hi", "params": "hot", "signals": "loud"}]

    path = write(
        tmp_path / "s.yaml",
        """
        suite: s
        defaults: {params: {temperature: 0}, signals: [greedy]}
        cases:
          - id: g
            generator: {name: test_wrong_types}
        """,
    )
    with pytest.raises(ProbeFileError) as err:
        load_suite_file(path)
    assert (err.value.field, err.value.line) == ("cases[0].generator", 5)
    assert "generated case 'g.x': params:" in err.value.message


def test_anchors_and_aliases_are_allowed(tmp_path: Path) -> None:
    path = write(
        tmp_path / "s.yaml",
        """
        suite: s
        cases:
          - {id: a, prompt: hi, params: &cheap {max_tokens: 8, temperature: 0}}
          - {id: b, prompt: yo, params: *cheap}
        """,
    )
    a, b = load_one(path).cases
    assert a.params == b.params and a.params.max_tokens == 8


# --- cases expanded per model (a context ladder that leaves out its window) -------------

PER_MODEL = """
suite: lad
defaults:
  params: {temperature: 0, max_tokens: 32}
  samples: 2
cases:
  - {id: first, prompt: hi}
  - id: ladder
    description: the window is the model's
    generator:
      name: context_ladder
      params: {fractions: [0.25, 0.5], tasks: [needle, multikey], seed: 3}
  - {id: last, prompt: bye}
"""


def window(tokens: int | None = None) -> ModelProfile:
    return ModelProfile(context_window=tokens)


def ids_and_hashes(cases: list[Any]) -> list[tuple[str, str]]:
    return [(c.id, c.content_hash) for c in cases]


def test_a_ladder_without_window_is_expanded_per_model_at_its_profiles_window(
    tmp_path: Path,
) -> None:
    suite = load_one(write(tmp_path / "lad.yaml", PER_MODEL))
    assert [c.id for c in suite.cases] == ["first", "last"]  # the ladder waits for a model
    assert [e.id for e in suite.per_model] == ["ladder"]
    small = suite.cases_for("small", window(2048))
    large = suite.cases_for("large", window(4096))
    assert small.skipped == large.skipped == []
    ladder = [f"ladder.{task}.len{n}" for task in ("needle", "multikey") for n in (496, 992)]
    assert [c.id for c in small.cases] == ["first", *ladder, "last"]  # in file order
    assert [c.id for c in large.cases][1:3] == ["ladder.needle.len1008", "ladder.needle.len2016"]
    assert ids_and_hashes([small.cases[0], small.cases[-1]]) == ids_and_hashes(
        [large.cases[0], large.cases[-1]]
    )
    for a, b in zip(small.cases[1:-1], large.cases[1:-1], strict=True):
        assert a.metadata["window"] == 2048 and b.metadata["window"] == 4096
        assert len(b.messages[0].content or "") > 1.8 * len(a.messages[0].content or "")
        assert a.content_hash != b.content_hash  # what is sent differs, so does its hash
        assert (a.samples, a.params.wire()) == (2, {"temperature": 0, "max_tokens": 32})
        assert a.signals == ["long_context"] and a.description == "the window is the model's"
    # Deterministic: the same window gives the same cases, so the same hashes.
    again = load_one(write(tmp_path / "lad.yaml", PER_MODEL)).cases_for("other", window(2048))
    assert ids_and_hashes(again.cases) == ids_and_hashes(small.cases)


def test_the_suite_hash_counts_a_per_model_case_as_written(tmp_path: Path) -> None:
    def hash_of(text: str) -> str:
        return load_one(write(tmp_path / "lad.yaml", text)).hash

    first = hash_of(PER_MODEL)
    assert hash_of(PER_MODEL.replace("the window is the model's", "other words")) == first
    for old, new in (("seed: 3", "seed: 4"), ("samples: 2", "samples: 3"), ("hi}", "hey}")):
        assert hash_of(PER_MODEL.replace(old, new)) != first, new


def test_a_window_written_in_the_file_is_used_as_is_and_hashes_alike(tmp_path: Path) -> None:
    (tmp_path / "written").mkdir()
    text = PER_MODEL.replace("params: {fractions", "params: {window: 2048, fractions")
    written = load_one(write(tmp_path / "written" / "lad.yaml", text))
    assert written.per_model == [] and len(written.cases) == 6  # expanded at load, as before
    for profile in (window(), window(4096)):
        assert written.cases_for("m", profile).cases == written.cases
    from_profile = load_one(write(tmp_path / "lad.yaml", PER_MODEL)).cases_for("m", window(2048))
    assert ids_and_hashes(written.cases) == ids_and_hashes(from_profile.cases)


def test_a_model_without_a_window_is_not_sent_the_case_unless_it_states_a_fallback(
    tmp_path: Path,
) -> None:
    suite = load_one(write(tmp_path / "lad.yaml", PER_MODEL))
    unknown = suite.cases_for("m", window())
    assert [c.id for c in unknown.cases] == ["first", "last"]
    reason = "the model's profile has no context_window and the case no fallback_window"
    assert unknown.skipped == [("ladder", reason)]

    (tmp_path / "fallback").mkdir()
    text = PER_MODEL.replace("seed: 3}", "seed: 3, fallback_window: 2048}")
    fallback = load_one(write(tmp_path / "fallback" / "lad.yaml", text))
    assert fallback.hash != suite.hash
    at_fallback = fallback.cases_for("m", window())
    assert at_fallback.skipped == []
    expected = ids_and_hashes(suite.cases_for("m", window(2048)).cases)
    assert ids_and_hashes(at_fallback.cases) == expected
    # A profile's window comes first.
    at_profile = ids_and_hashes(fallback.cases_for("m", window(4096)).cases)
    assert at_profile == ids_and_hashes(suite.cases_for("m", window(4096)).cases)


def test_a_window_too_small_is_one_line_naming_the_model_and_the_case(tmp_path: Path) -> None:
    path = write(tmp_path / "lad.yaml", PER_MODEL)
    suite = load_one(path)
    with pytest.raises(ProbeFileError) as err:
        suite.cases_for("tiny", window(128))
    e = err.value
    assert (e.field, e.line) == ("cases[1].generator.params.fractions", 10), str(e)
    assert e.message.startswith(
        "case 'ladder' for model 'tiny' (window 128 from its profile.context_window): "
        "no rung reaches min_tokens (64)"
    )
    assert e.one_line() == f"{path}:10: {e.field}: {e.message}"
    with pytest.raises(ProbeFileError) as err:
        suite.cases_for("tiny", window(100))
    assert err.value.field == "cases[1].generator.params.window"
    assert "for model 'tiny' (window 100 " in err.value.message
    assert "greater than or equal to 128" in err.value.message


def test_per_model_cases_keep_their_place_and_their_ids_across_files(tmp_path: Path) -> None:
    ladder = "generator: {name: context_ladder, params: {tasks: [needle], fractions: [0.5]}}"
    write(tmp_path / "a.yaml", "suite: s\ncases:\n  - {id: x, prompt: hi}\n")
    write(
        tmp_path / "b.yaml",
        f"suite: s\ncases:\n  - {{id: l, {ladder}}}\n  - {{id: y, prompt: yo}}\n",
    )
    suite = load_suite("s", tmp_path)
    assert [c.id for c in suite.cases_for("m", window(2048)).cases] == ["x", "l.needle.len992", "y"]
    assert [type(c).__name__ for c in suite.written()] == ["ProbeCase", "PerModelCase", "ProbeCase"]

    write(tmp_path / "c.yaml", f"suite: s\ncases:\n  - {{id: l, {ladder}}}\n")
    with pytest.raises(ProbeFileError, match="duplicate case id 'l' in suite 's'") as err:
        load_suite("s", tmp_path)
    assert err.value.path == str(tmp_path / "c.yaml")

    write(tmp_path / "c.yaml", "suite: s\ncases:\n  - {id: l.needle.len992, prompt: hi}\n")
    clash = load_suite("s", tmp_path)  # only a model's window says what the ladder's ids are
    assert len(clash.cases_for("m", window(4096)).cases) == 4
    with pytest.raises(ProbeFileError, match=r"for model 'm': duplicate case id 'l\.needle"):
        clash.cases_for("m", window(2048))
