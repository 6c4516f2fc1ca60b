"""Probe suite files (YAML) -> validated `ProbeCase`s -> `CompletionRequest`s.

The format is documented in probes/README.md. Every problem in a file becomes one
`ProbeFileError` naming the file, the field path and the line of the YAML node, so the CLI
prints a single line such as::

    probes/core.yaml:42: cases[3].expect: expect needs exactly one of exact, regex, ...
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

import auditor.probes.ladder  # noqa: F401  (registers the context_ladder generator)
from auditor.errors import ProbeFileError, UsageError
from auditor.probes.generators import GeneratorError, generators
from auditor.records import (
    CompletionRequest,
    Expect,
    Message,
    ProbeCase,
    RequestParams,
    content_hash,
)
from auditor.yamlfile import field_path, line_of, read_yaml

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]*$"
SUITE_GLOB = "*.yaml"

Loc = tuple[int | str, ...]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GeneratorSpec(_Strict):
    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class CaseDefaults(_Strict):
    """Values merged into every case of the file; a case's own values win."""

    params: RequestParams = Field(default_factory=RequestParams)
    samples: int | None = Field(default=None, ge=1, le=1000)
    signals: list[str] | None = None
    tags: list[str] | None = None


class CaseEntry(_Strict):
    """One case as written in the file (shorthand and generator forms included)."""

    id: str = Field(pattern=NAME_PATTERN)
    description: str | None = None
    system: str | None = None
    prompt: str | None = None
    messages: list[Message] | None = Field(default=None, min_length=1)
    params: RequestParams | None = None
    samples: int | None = Field(default=None, ge=1, le=1000)
    signals: list[str] | None = None
    expect: Expect | None = None
    group: str | None = None
    tags: list[str] | None = None
    metadata: dict[str, Any] | None = None
    generator: GeneratorSpec | None = None


class SuiteFile(_Strict):
    suite: str = Field(pattern=NAME_PATTERN)
    description: str | None = None
    defaults: CaseDefaults = Field(default_factory=CaseDefaults)
    cases: list[CaseEntry] = Field(min_length=1)


class Suite(BaseModel):
    """A named set of probe cases, possibly gathered from several files."""

    name: str
    description: str | None = None
    files: list[str] = Field(default_factory=list)
    cases: list[ProbeCase] = Field(default_factory=list)

    @property
    def hash(self) -> str:
        """Changes iff what is sent or how it is judged changes (descriptions do not count)."""
        return content_hash(sorted([case.id, case.content_hash] for case in self.cases))

    def case(self, case_id: str) -> ProbeCase:
        for case in self.cases:
            if case.id == case_id:
                return case
        raise KeyError(case_id)


@dataclass(frozen=True)
class _Origin:
    """Where a case was written: to name the second occurrence of a duplicate id."""

    path: str
    field: str
    line: int | None


@dataclass
class _Loaded:
    suite: Suite
    origins: list[_Origin]


class _File:
    """One open suite file: its path and node tree, to turn locations into errors."""

    def __init__(self, path: Path, node: yaml.Node | None) -> None:
        self.path = path
        self.node = node

    def error(self, loc: Loc, message: str) -> ProbeFileError:
        field = field_path(loc) if loc else None
        return ProbeFileError(str(self.path), message, field=field, line=line_of(self.node, loc))

    def validate(self, model: type[BaseModel], data: Any, loc: Loc = ()) -> Any:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise self.from_validation(exc, loc) from None

    def from_validation(self, exc: ValidationError, loc: Loc) -> ProbeFileError:
        first = exc.errors()[0]
        where = (*loc, *first["loc"])
        return self.error(where, _message(first))


def _message(err: Any) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key"
    if err["type"] == "missing":
        return "required key is missing"
    if err["type"] == "string_pattern_mismatch":
        return "must start with a letter or digit and hold only letters, digits and _ . : -"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def load_suite_file(path: Path) -> list[Suite]:
    """Load one suite file; a list for uniformity with `validate_path`."""
    loaded = _load_file(Path(path))
    suite = Suite(name=loaded.suite.name, description=loaded.suite.description)
    _merge_into(suite, {}, loaded)
    return [suite]


#: The suites shipped with the package (the repo's probes/, linked into the package), so a
#: providers.yaml anywhere can name `core`, `demo`, `deep` or `tools`.
PACKAGED_SUITES = Path(__file__).resolve().parent / "suites"


def load_suites(probes_dir: Path | None, packaged: bool = True) -> dict[str, Suite]:
    """Every `*.yaml` directly in `probes_dir`, merged by suite name (files in name order),
    then (with `packaged`) each shipped suite that `probes_dir` does not define: a suite of
    the same name in `probes_dir` takes precedence. `probes_dir` None: the shipped ones."""
    merged = _load_dir(Path(probes_dir)) if probes_dir is not None else {}
    if packaged and PACKAGED_SUITES.is_dir():
        same = probes_dir is not None and Path(probes_dir).resolve() == PACKAGED_SUITES
        for name, suite in ({} if same else _load_dir(PACKAGED_SUITES)).items():
            merged.setdefault(name, suite)
    return merged


def _load_dir(probes_dir: Path) -> dict[str, Suite]:
    if not probes_dir.is_dir():
        raise ProbeFileError(str(probes_dir), "probe directory not found")
    merged: dict[str, Suite] = {}
    seen: dict[str, dict[str, _Origin]] = {}
    for path in sorted(probes_dir.glob(SUITE_GLOB)):
        loaded = _load_file(path)
        name = loaded.suite.name
        if name not in merged:
            merged[name] = Suite(name=name, description=loaded.suite.description)
            seen[name] = {}
        _merge_into(merged[name], seen[name], loaded)
    return merged


def _merge_into(target: Suite, seen: dict[str, _Origin], loaded: _Loaded) -> None:
    """Append a file's cases to a suite; a duplicate id names its second occurrence."""
    for case, origin in zip(loaded.suite.cases, loaded.origins, strict=True):
        first = seen.get(case.id)
        if first is not None:
            at = f"line {first.line}" if first.path == origin.path else f"{first.path}:{first.line}"
            raise ProbeFileError(
                origin.path,
                f"duplicate case id {case.id!r} in suite {target.name!r} (first at {at})",
                field=origin.field,
                line=origin.line,
            )
        seen[case.id] = origin
        target.cases.append(case)
    target.files.extend(loaded.suite.files)
    target.description = target.description or loaded.suite.description


def load_suite(name: str, probes_dir: Path | None) -> Suite:
    suites = load_suites(probes_dir)
    if name not in suites:
        known = ", ".join(sorted(suites)) or "none"
        where = "" if probes_dir is None else f" in {Path(probes_dir).as_posix().rstrip('/')}/"
        raise UsageError(f"unknown suite {name!r}{where} (known: {known})")
    return suites[name]


def validate_path(path: Path) -> list[Suite]:
    """Check a suite file, or every suite in a directory."""
    path = Path(path)
    if path.is_dir():
        return list(load_suites(path, packaged=False).values())
    return load_suite_file(path)


def expand_requests(suite: Suite) -> list[CompletionRequest]:
    """One request per case per sample, in suite order, samples of a case together."""
    return [
        CompletionRequest.from_case(case, k) for case in suite.cases for k in range(case.samples)
    ]


# --- loading one file -------------------------------------------------------------------


def _load_file(path: Path) -> _Loaded:
    data, node = read_yaml(path, ProbeFileError)
    f = _File(path, node)
    if not isinstance(data, dict):
        raise f.error((), "expected a mapping with 'suite' and 'cases' at the top level")
    _reject_duplicate_keys(f, node)
    parsed: SuiteFile = f.validate(SuiteFile, data)
    cases: list[ProbeCase] = []
    origins: list[_Origin] = []
    for i, entry in enumerate(parsed.cases):
        loc: Loc = ("cases", i)
        raw = _with_defaults(entry, parsed.defaults)
        if entry.generator is None:
            _check_written(f, entry, loc)
            produced = [(raw, (*loc, "id"))]
        else:
            produced = []
            for generated in _generate(f, entry, raw, loc):
                _check_generated(f, generated, loc)
                produced.append((generated, (*loc, "generator")))
        for case_raw, where in produced:
            cases.append(_to_case(f, case_raw, parsed.suite, loc))
            origins.append(_Origin(str(path), field_path(where), line_of(node, where)))
    suite = Suite(name=parsed.suite, description=parsed.description, files=[str(path)], cases=cases)
    return _Loaded(suite, origins)


def _reject_duplicate_keys(
    f: _File, node: yaml.Node | None, loc: Loc = (), visited: set[int] | None = None
) -> None:
    """YAML keeps the last of two equal keys silently; a probe file treats that as a typo."""
    visited = set() if visited is None else visited
    if node is None or id(node) in visited:  # an alias is checked once, where it is defined
        return
    visited.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key, value in node.value:
            name = key.value  # every node has one: a scalar key's text
            if name in seen:
                raise ProbeFileError(
                    str(f.path),
                    "duplicate key",
                    field=field_path((*loc, name)),
                    line=key.start_mark.line + 1,
                )
            seen.add(name)
            _reject_duplicate_keys(f, value, (*loc, name), visited)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _reject_duplicate_keys(f, item, (*loc, i), visited)


def _with_defaults(entry: CaseEntry, defaults: CaseDefaults) -> dict[str, Any]:
    """The case as a raw dict with the file's defaults applied (params merged key by key)."""
    raw = entry.model_dump(exclude_unset=True, exclude={"generator"})
    params = defaults.params.model_dump(exclude_unset=True)
    if entry.params is not None:
        params.update(entry.params.model_dump(exclude_unset=True))
    raw["params"] = params
    for key in ("samples", "signals", "tags"):
        if key not in raw and getattr(defaults, key) is not None:
            raw[key] = copy.deepcopy(getattr(defaults, key))
    return raw


def _shape_problem(entry: CaseEntry) -> tuple[Loc, str] | None:
    """The rules pydantic types cannot say: which keys may appear together.

    Returns the location (relative to the case) and message of the first problem.
    """
    given = entry.model_fields_set
    if entry.generator is not None:
        for key in ("messages", "prompt"):
            if key in given:
                return (key,), f"a case with a generator has no {key}; the generator writes it"
    elif "messages" in given and given & {"system", "prompt"}:
        return ("messages",), "a case has either system/prompt or messages, not both"
    elif "messages" not in given and entry.prompt is None:
        if "system" in given:
            return ("system",), "system needs a prompt (or use messages)"
        return (), "a case needs a prompt, messages or a generator"
    elif entry.messages is not None and not any(m.role == "user" for m in entry.messages):
        return ("messages",), "messages need at least one user message"
    if entry.expect is not None:
        return _expect_problem(entry.expect)
    return None


def _expect_problem(expect: Expect) -> tuple[Loc, str] | None:
    if expect.regex is not None:
        try:
            re.compile(expect.regex)
        except (re.error, OverflowError, RecursionError) as exc:
            return ("expect", "regex"), f"invalid regular expression: {exc}"
    if expect.json_schema is not None:
        try:
            jsonschema.validators.validator_for(expect.json_schema).check_schema(expect.json_schema)
        except jsonschema.SchemaError as exc:
            return ("expect", "json_schema"), f"invalid JSON Schema: {exc.message}"
        except (TypeError, ValueError, RecursionError) as exc:  # e.g. "$schema: []"
            return ("expect", "json_schema"), f"invalid JSON Schema: {exc}"
    return None


def _check_written(f: _File, entry: CaseEntry, loc: Loc) -> None:
    problem = _shape_problem(entry)
    if problem is not None:
        raise f.error((*loc, *problem[0]), problem[1])


def _check_generated(f: _File, raw: dict[str, Any], loc: Loc) -> None:
    """Check a generated case like a written one; errors point at the case's generator."""

    def fail(where: Loc, message: str) -> ProbeFileError:
        field = f"{field_path(where)}: " if where else ""
        return f.error((*loc, "generator"), f"generated case {raw.get('id')!r}: {field}{message}")

    if "generator" in raw:
        raise fail(("generator",), "a generator cannot produce generator cases")
    try:
        entry = CaseEntry.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise fail(tuple(first["loc"]), _message(first)) from None
    problem = _shape_problem(entry)
    if problem is not None:
        raise fail(*problem)


def _generate(
    f: _File, entry: CaseEntry, template: dict[str, Any], loc: Loc
) -> list[dict[str, Any]]:
    """Run a case's generator and merge each of its raw cases over the template."""
    spec = entry.generator
    assert spec is not None
    _check_written(f, entry, loc)
    gloc: Loc = (*loc, "generator")
    try:
        generator = generators.get(spec.name)()
    except KeyError as exc:
        raise f.error((*gloc, "name"), str(exc.args[0])) from None
    try:
        produced = generator.generate(copy.deepcopy(template), copy.deepcopy(spec.params))
    except ValidationError as exc:
        raise f.from_validation(exc, (*gloc, "params")) from None
    except GeneratorError as exc:
        where = (*gloc, "params", exc.key) if exc.key else (*gloc, "params")
        raise f.error(where, str(exc)) from None
    except (ValueError, TypeError, KeyError) as exc:
        raise f.error((*gloc, "params"), f"generator {spec.name!r} failed: {exc}") from None
    if not isinstance(produced, list) or not produced:
        raise f.error(gloc, f"generator {spec.name!r} produced no cases")
    out: list[dict[str, Any]] = []
    for raw in produced:
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
            raise f.error(gloc, f"generator {spec.name!r} produced a case without a string id")
        out.append(_merge_generated(template, raw))
    return out


def _merge_generated(template: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
    out = {k: copy.deepcopy(v) for k, v in template.items() if k != "id"}
    for key, value in raw.items():
        # Values of the wrong type replace the template's, so validation reports them.
        if key in ("params", "metadata") and isinstance(value, dict):
            out[key] = {**out.get(key, {}), **value}
        elif key in ("signals", "tags") and isinstance(value, list):
            out[key] = list(dict.fromkeys([*out.get(key, []), *value]))
        else:
            out[key] = value
    out["id"] = f"{template['id']}.{raw['id']}"
    return out


def _to_case(f: _File, raw: dict[str, Any], suite: str, loc: Loc) -> ProbeCase:
    """Turn a checked raw case (shorthand expanded to messages) into a ProbeCase."""
    raw = dict(raw)
    messages = raw.pop("messages", None)
    system, prompt = raw.pop("system", None), raw.pop("prompt", None)
    if messages is None:
        messages = [{"role": "system", "content": system}] if system is not None else []
        messages.append({"role": "user", "content": prompt})
    case: ProbeCase = f.validate(ProbeCase, {**raw, "messages": messages, "suite": suite}, loc)
    try:  # what a round stores and sends: JSON, finite numbers, UTF-8 text
        json.dumps(case.model_dump(mode="json"), allow_nan=False).encode()
        case.content_hash  # noqa: B018
    except (TypeError, ValueError) as exc:
        message = "must be plain JSON (no NaN or infinity, binary or lone surrogates)"
        raise f.error(loc, f"{message}: {str(exc)[:100]}") from None
    return case
