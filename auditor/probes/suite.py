"""Probe suite files (YAML) -> validated `ProbeCase`s -> `CompletionRequest`s.

The format is documented in probes/README.md. Every problem in a file becomes one
`ProbeFileError` naming the file, the field path and the line of the YAML node, so the CLI
prints a single line such as::

    probes/core.yaml:42: cases[3].expect: expect needs exactly one of exact, regex, ...

A generator case that leaves out a param taken from the model's profile (the context ladder's
`window`) is kept as a `PerModelCase`, its params checked, and expanded for each model of a
round by `Suite.cases_for`.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import jsonschema
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

import auditor.probes.ladder  # noqa: F401  (registers the context_ladder generator)
from auditor.errors import ProbeFileError, UsageError
from auditor.probes.generators import GeneratorError, ProbeGenerator, generators
from auditor.records import (
    CompletionRequest,
    Expect,
    Message,
    ProbeCase,
    RequestParams,
    content_hash,
)
from auditor.yamlfile import field_path, line_of, read_yaml

if TYPE_CHECKING:
    from auditor.config import ModelProfile

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
    reasoning_effort: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.\-]+$")
    stream: bool | None = None
    generator: GeneratorSpec | None = None


class SuiteFile(_Strict):
    suite: str = Field(pattern=NAME_PATTERN)
    description: str | None = None
    defaults: CaseDefaults = Field(default_factory=CaseDefaults)
    cases: list[CaseEntry] = Field(min_length=1)


class PerModelCase(BaseModel):
    """A generator case that leaves out params each model's profile gives (the context
    ladder's `window`, from `context_window`): kept as written, checked, and expanded per
    model by `Suite.cases_for`. A `fallback_<param>` in its params stands for a profile
    without that field; with none, a model whose profile lacks it is not sent the case."""

    id: str
    generator: str
    params: dict[str, Any]  # as written, the fallbacks taken out
    from_profile: dict[str, str]  # each param left out -> the profile field that gives it
    fallbacks: dict[str, Any]  # param -> its `fallback_<param>`, where the case states one
    template: dict[str, Any]  # the case's other keys, the file's defaults applied
    position: int  # how many of the suite's `cases` come before its own
    path: str
    loc: tuple[int | str, ...]  # ("cases", i)
    line: int | None  # of its `generator` key
    # Expanded at the fallbacks when the file is loaded (which checks them), if it has all.
    fallback_cases: list[ProbeCase] | None = None

    @property
    def content_hash(self) -> str:
        """Of the case as written: with the profile's values, it says what is sent."""
        template = {k: v for k, v in self.template.items() if k != "description"}
        written = {"generator": self.generator, "params": self.params, "template": template}
        return content_hash({**written, "fallbacks": self.fallbacks})

    def skip_reason(self, profile: ModelProfile) -> str | None:
        """Why a model with this profile is not sent the case: a param nothing gives."""
        for param, field in self.from_profile.items():
            if getattr(profile, field, None) is None and param not in self.fallbacks:
                return f"the model's profile has no {field} and the case no fallback_{param}"
        return None

    def expand(self, suite: str, model: str, profile: ModelProfile) -> list[ProbeCase]:
        """The cases for one model (whose profile has no `skip_reason`). A bad value is one
        `ProbeFileError` at the case's generator, naming the model and where the value is from."""
        values: dict[str, Any] = {}
        sources: list[str] = []
        for param, field in self.from_profile.items():
            value = getattr(profile, field, None)
            source = f"profile.{field}"
            if value is None:
                value, source = self.fallbacks[param], f"fallback_{param}"
            values[param] = value
            sources.append(f"{param} {value} from its {source}")
        if values == self.fallbacks and self.fallback_cases is not None:
            return list(self.fallback_cases)
        f = _ForModel(self, f"model {model!r} ({', '.join(sources)})")
        generator = _generator(f, self.generator, self.loc)
        params = {**self.params, **values}
        return _expand(f, generator, self.generator, self.template, params, self.loc, suite)


class ModelCases(NamedTuple):
    cases: list[ProbeCase]
    skipped: list[tuple[str, str]]  # (per-model case id, why)


class Suite(BaseModel):
    """A named set of probe cases, possibly gathered from several files. `per_model` holds
    the generator cases expanded per model: `cases_for` gives a model's whole list."""

    name: str
    description: str | None = None
    files: list[str] = Field(default_factory=list)
    cases: list[ProbeCase] = Field(default_factory=list)
    per_model: list[PerModelCase] = Field(default_factory=list)

    @property
    def hash(self) -> str:
        """Changes iff what is sent or how it is judged changes (descriptions do not count).
        A per-model case counts as written; the hash of each expanded case says the rest."""
        pairs = [[case.id, case.content_hash] for case in self.cases]
        pairs += [[f"{entry.id}.*", entry.content_hash] for entry in self.per_model]
        return content_hash(sorted(pairs))

    def case(self, case_id: str) -> ProbeCase:
        for case in self.cases:
            if case.id == case_id:
                return case
        raise KeyError(case_id)

    def cases_for(self, model: str, profile: ModelProfile) -> ModelCases:
        """The cases `model` is sent, in file order: the suite's, and each per-model case
        expanded with the params its profile gives (else the case's fallbacks). A per-model
        case with a param neither gives is skipped, and said so in `skipped`."""
        if not self.per_model:
            return ModelCases(list(self.cases), [])
        out: list[ProbeCase] = []
        skipped: list[tuple[str, str]] = []
        seen = {case.id for case in self.cases}
        for entry in self.written():
            if isinstance(entry, ProbeCase):
                out.append(entry)
                continue
            reason = entry.skip_reason(profile)
            if reason is not None:
                skipped.append((entry.id, reason))
                continue
            expanded = entry.expand(self.name, model, profile)
            for case in expanded:
                if case.id in seen:
                    duplicate = f"duplicate case id {case.id!r} in suite {self.name!r}"
                    raise _ForModel(entry, f"model {model!r}").error(entry.loc, duplicate)
                seen.add(case.id)
            out += expanded
        return ModelCases(out, skipped)

    def written(self) -> Iterator[ProbeCase | PerModelCase]:
        """The cases and the per-model cases, in file order."""
        start = 0
        for entry in self.per_model:
            yield from self.cases[start : entry.position]
            start = entry.position
            yield entry
        yield from self.cases[start:]


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

    def origin(self, loc: Loc) -> _Origin:
        return _Origin(str(self.path), field_path(loc), line_of(self.node, loc))


class _ForModel(_File):
    """Errors of a per-model case's expansion: at its generator's line (the file's node tree
    is not kept), naming the case and the model."""

    def __init__(self, entry: PerModelCase, model: str) -> None:
        super().__init__(Path(entry.path), None)
        self.line = entry.line
        self.prefix = f"case {entry.id!r} for {model}: "

    def error(self, loc: Loc, message: str) -> ProbeFileError:
        field = field_path(loc) if loc else None
        return ProbeFileError(str(self.path), self.prefix + message, field=field, line=self.line)


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
    # A per-model case's id is the prefix of its cases' ids: two of them may not share one.
    keys = [
        (case.id, origin) for case, origin in zip(loaded.suite.cases, loaded.origins, strict=True)
    ]
    keys += [
        (f"{e.id}.*", _Origin(e.path, field_path((*e.loc, "id")), e.line))
        for e in loaded.suite.per_model
    ]
    for key, origin in keys:
        first = seen.get(key)
        if first is not None:
            at = f"line {first.line}" if first.path == origin.path else f"{first.path}:{first.line}"
            raise ProbeFileError(
                origin.path,
                f"duplicate case id {key.removesuffix('.*')!r} in suite {target.name!r} "
                f"(first at {at})",
                field=origin.field,
                line=origin.line,
            )
        seen[key] = origin
    offset = len(target.cases)
    for entry in loaded.suite.per_model:
        target.per_model.append(entry.model_copy(update={"position": entry.position + offset}))
    target.cases += loaded.suite.cases
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
    """One request per case per sample, in suite order, samples of a case together (the
    suite's `cases`: its per-model cases need a model, `Suite.cases_for`)."""
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
    per_model: list[PerModelCase] = []
    for i, entry in enumerate(parsed.cases):
        loc: Loc = ("cases", i)
        raw = _with_defaults(entry, parsed.defaults)
        _check_written(f, entry, loc)
        if entry.generator is None:
            cases.append(_to_case(f, raw, parsed.suite, loc))
            origins.append(f.origin((*loc, "id")))
            continue
        spec = entry.generator
        generator = _generator(f, spec.name, loc)
        left_out = _left_out(f, generator, spec, loc)
        if left_out:
            position = len(cases)
            per_model.append(
                _per_model(f, generator, spec, raw, loc, parsed.suite, left_out, position)
            )
            continue
        for case in _expand(f, generator, spec.name, raw, spec.params, loc, parsed.suite):
            cases.append(case)
            origins.append(f.origin((*loc, "generator")))
    suite = Suite(
        name=parsed.suite,
        description=parsed.description,
        files=[str(path)],
        cases=cases,
        per_model=per_model,
    )
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
    if entry.generator is not None and _writes_messages(entry.generator.name):
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


def _writes_messages(generator: str) -> bool:
    """Whether the generator writes its cases' messages (an unknown one is reported where
    it is looked up)."""
    try:
        return generators.get(generator).writes_messages
    except KeyError:
        return True


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


def _generator(f: _File, name: str, loc: Loc) -> ProbeGenerator:
    try:
        return generators.get(name)()
    except KeyError as exc:
        raise f.error((*loc, "generator", "name"), str(exc.args[0])) from None


def _left_out(f: _File, generator: ProbeGenerator, spec: GeneratorSpec, loc: Loc) -> dict[str, str]:
    """The params the case leaves to the model's profile: param -> profile field."""
    for param, field in generator.profile_params.items():
        if param in spec.params and f"fallback_{param}" in spec.params:
            raise f.error(
                (*loc, "generator", "params", f"fallback_{param}"),
                f"only for a case that leaves out {param} (then the model's profile.{field})",
            )
    return {p: field for p, field in generator.profile_params.items() if p not in spec.params}


def _per_model(
    f: _File,
    generator: ProbeGenerator,
    spec: GeneratorSpec,
    template: dict[str, Any],
    loc: Loc,
    suite: str,
    left_out: dict[str, str],
    position: int,
) -> PerModelCase:
    """A case to expand per model: its params checked now, without the profile's, and its
    cases at its fallbacks expanded now if it has all of them."""
    params = copy.deepcopy(spec.params)
    fallbacks = {p: params.pop(f"fallback_{p}") for p in left_out if f"fallback_{p}" in params}
    with _param_errors(f, spec.name, loc, {}):
        generator.check(copy.deepcopy(params))
    entry = PerModelCase(
        id=template["id"],
        generator=spec.name,
        params=params,
        from_profile=left_out,
        fallbacks=fallbacks,
        template=template,
        position=position,
        path=str(f.path),
        loc=loc,
        line=line_of(f.node, (*loc, "generator")),
    )
    if fallbacks.keys() == left_out.keys():
        rename = {p: f"fallback_{p}" for p in fallbacks}
        at_fallbacks = {**params, **fallbacks}
        entry.fallback_cases = _expand(
            f, generator, spec.name, template, at_fallbacks, loc, suite, rename
        )
    return entry


@contextmanager
def _param_errors(f: _File, name: str, loc: Loc, rename: Mapping[str, str]) -> Iterator[None]:
    """A generator's bad params as one error under `cases[i].generator.params` (a param
    given under another name, as a fallback, named as written)."""
    where: Loc = (*loc, "generator", "params")
    try:
        yield
    except ValidationError as exc:
        first = exc.errors()[0]
        inner = tuple(first["loc"])
        if inner and isinstance(inner[0], str):
            inner = (rename.get(inner[0], inner[0]), *inner[1:])
        raise f.error((*where, *inner), _message(first)) from None
    except GeneratorError as exc:
        key = rename.get(exc.key, exc.key) if exc.key else None
        raise f.error((*where, key) if key else where, str(exc)) from None
    except (ValueError, TypeError, KeyError) as exc:
        raise f.error(where, f"generator {name!r} failed: {exc}") from None


def _expand(
    f: _File,
    generator: ProbeGenerator,
    name: str,
    template: dict[str, Any],
    params: dict[str, Any],
    loc: Loc,
    suite: str,
    rename: Mapping[str, str] | None = None,
) -> list[ProbeCase]:
    """Run a case's generator, merge each of its raw cases over the template and check them
    like written ones."""
    gloc: Loc = (*loc, "generator")
    with _param_errors(f, name, loc, rename or {}):
        produced = generator.generate(copy.deepcopy(template), copy.deepcopy(params))
    if not isinstance(produced, list) or not produced:
        raise f.error(gloc, f"generator {name!r} produced no cases")
    out: list[dict[str, Any]] = []
    for raw in produced:
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
            raise f.error(gloc, f"generator {name!r} produced a case without a string id")
        out.append(_merge_generated(template, raw))
    for generated in out:
        _check_generated(f, generated, loc)
    return [_to_case(f, generated, suite, loc) for generated in out]


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
