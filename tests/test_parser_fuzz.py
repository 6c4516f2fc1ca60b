"""Hostile config and probe files: every bad file is one `AuditorError` (exit 2, one line),
never another exception, and every file that is accepted can really be used.

Hypothesis mutates a valid providers.yaml and a valid probe file, as documents (keys deleted,
unknown keys, values replaced by wrong types, huge or non-finite numbers, bad URLs, dates,
binary, deep nesting, `${UNSET}` variables) and as text (tabs, stray or non-UTF-8 bytes,
truncation, duplicated lines, deep nesting, recursive aliases), and runs the functions the
CLI calls in process. "Usable" means what `auditor run` does next with an accepted file:
build a client per provider, store the config and the probe cases as JSON (PostgreSQL takes
no NaN or Infinity), hash the cases and encode every request body. A bounded number of bad
files then go through the real `auditor config validate` and `auditor probes validate`.
"""

from __future__ import annotations

import copy
import datetime
import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from helpers.cli import MINI_SUITE, assert_one_line_error, run_auditor
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from auditor.config import AuditorConfig, load_config, require_secrets
from auditor.errors import AuditorError
from auditor.probes import expand_requests, validate_path
from auditor.providers.openai_compatible import OpenAICompatibleAdapter
from auditor.secrets import Redactor

VALID_CONFIG: dict[str, Any] = {
    "database": "sqlite:///auditor.db",
    "reference": None,
    "suites": ["mini"],
    "probes_dir": "probes",
    "budget": {"max_requests": 100, "max_cost": 2.5, "sequential": {"looks": 2}},
    "models": [
        {
            "name": "smollm2-135m-instruct",
            "reference": None,
            "providers": [
                {
                    "name": "acme",
                    "base_url": "http://127.0.0.1:9/v1",
                    "model": "m",
                    "api_key_env": "FUZZ_KEY",
                    "headers": {"X-Team": "${FUZZ_TEAM}"},
                    "params": {"top_k": 40},
                    "price": {"input_per_mtok": 0.2, "output_per_mtok": 0.6},
                    "retry": {"max_attempts": 2, "backoff_base_s": 0.5},
                    "timeout_s": 5,
                    "max_concurrency": 2,
                    "requests_per_second": 5,
                    "burst": 1,
                    "tokens_per_minute": 10000,
                    "stream": False,
                    "trusted": True,
                }
            ],
        }
    ],
    "schedule": [
        {"suite": "mini", "every": "1h", "jitter": "2m"},
        {"suite": "mini", "cron": "0 3 * * *", "grace": "6h"},
    ],
    "alerts": {
        "sinks": [
            {
                "name": "ops",
                "url": "http://127.0.0.1:9/hook",
                "secret_env": "FUZZ_HOOK",
                "min_severity": "warning",
                "providers": ["acme"],
            }
        ],
        "give_up_after": "24h",
        "max_backoff": "10m",
    },
    "server": {"host": "127.0.0.1", "port": 8080},
    "daemon": {"shutdown_deadline": "20s", "stale_factor": 2, "lock_retry": "5s"},
}

TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
VALID_SUITE: dict[str, Any] = {
    "suite": "fuzz",
    "description": "every form a case can take",
    "defaults": {
        "params": {"temperature": 0, "max_tokens": 16},
        "samples": 1,
        "signals": ["s"],
        "tags": ["t"],
    },
    "cases": [
        {"id": "add", "prompt": "17 + 25?", "expect": {"number": 42, "tolerance": 0.5}},
        {"id": "cap", "system": "Be brief.", "prompt": "Capital?", "expect": {"exact": "Paris"}},
        {
            "id": "chat",
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
                {"role": "user", "content": "a code?"},
            ],
            "params": {"stop": ["\n"], "seed": 1, "top_p": 0.9},
            "expect": {"regex": "[0-9]+"},
        },
        {
            "id": "json",
            "prompt": "Answer in JSON.",
            "expect": {"json_schema": {"type": "object", "required": ["a"]}},
            "metadata": {"k": "v"},
            "group": "g",
            "samples": 2,
        },
        {"id": "tools", "prompt": "Weather?", "params": {"tools": [TOOL], "tool_choice": "auto"}},
        {
            "id": "needle",
            "generator": {"name": "needle", "params": {"lengths": [64], "depths": [0.5]}},
        },
        {
            "id": "arith",
            "generator": {
                "name": "perturbed_arithmetic",
                "params": {"problem": "{a} + {b}?", "answer": "a + b", "values": {"a": 2, "b": 3}},
            },
        },
    ],
}

# --- mutations ------------------------------------------------------------------------------

HOSTILE_VALUES: list[Any] = [
    None,
    True,
    -1,
    0,
    2**64,
    1e308,
    float("nan"),
    float("inf"),
    -float("inf"),
    "",
    "x" * 10_000,
    "${FUZZ_UNSET_VARIABLE}",
    "$FUZZ_KEY ${FUZZ_KEY}",
    "http://[::1",
    "http://h:99999/v1",
    "http://h h/v1",
    "ftp://h/",
    "http://\u00e9\u2615.test/v1",
    "caf\u00e9 \u2615",
    "a\r\nb",
    "\t",
    "\ud800",
    "9999999999999d",
    "99999999999999999999999999h",
    "1e400s",
    "-5m",
    "* * * * * *",
    "99 99 99 99 99",
    "(" * 300,
    "a{99999999999}",
    {"$schema": []},
    {"$schema": {"a": 1}},
    {"type": 5},
    datetime.date(2001, 1, 1),
    datetime.datetime(2001, 1, 1, 12, 0),
    b"\xff\xfe",
    b"ok",
    {"a": {"b": {"c": {"d": {"e": {"f": {"g": "deep"}}}}}}},
    [[[[[[[[[[["deep"]]]]]]]]]]],
    [],
    {},
    {"unknown": 1},
]
hostile = st.one_of(
    st.sampled_from(HOSTILE_VALUES),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
)


def paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            out += paths(value, (*prefix, i))
    return out


def apply(doc: Any, path: tuple[Any, ...], op: str, value: Any) -> None:
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    if op == "delete":
        del parent[last]
    elif op == "set":
        parent[last] = copy.deepcopy(value)  # later mutations must not reach HOSTILE_VALUES
    elif op == "wrap":
        parent[last] = [parent[last]]
    elif op == "unknown" and isinstance(parent[last], dict):
        parent[last]["colour"] = copy.deepcopy(value)


def to_text(doc: Any) -> str:
    try:
        return yaml.safe_dump(doc, sort_keys=False, allow_unicode=False)
    except yaml.YAMLError:
        return json.dumps(doc, default=str)  # JSON is YAML too


@st.composite
def documents(draw: st.DrawFn, valid: dict[str, Any]) -> bytes:
    """A mutated valid document, as file bytes, perhaps damaged as text too."""
    doc = copy.deepcopy(valid)
    for _ in range(draw(st.integers(1, 3))):
        candidates = paths(doc)
        if not candidates:
            break
        path = draw(st.sampled_from(candidates))
        op = draw(st.sampled_from(["delete", "set", "set", "set", "wrap", "unknown"]))
        apply(doc, path, op, draw(hostile))
    data = to_text(doc).encode("utf-8", errors="surrogatepass")
    damage = draw(
        st.sampled_from(["none", "none", "tab", "bytes", "cut", "dup", "nest", "alias", "digits"])
    )
    at = draw(st.integers(0, len(data)))
    if damage == "tab":
        data = data[:at] + b"\t" + data[at:]
    elif damage == "bytes":
        data = data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
    elif damage == "cut":
        data = data[:at]
    elif damage == "dup":
        lines = data.splitlines(keepends=True)
        i = draw(st.integers(0, max(len(lines) - 1, 0)))
        data = b"".join([*lines[: i + 1], *lines[i:]])
    elif damage == "nest":
        depth = draw(st.sampled_from([50, 500, 1200]))
        data += b"nested: " + b"[" * depth + b"]" * depth + b"\n"
    elif damage == "digits":  # more than Python converts from text to int by default
        data = re.sub(rb"\b[0-9]+\b", b"9" * 5000, data, count=1)
    elif damage == "alias":
        data += draw(st.sampled_from([b"loop: &a [*a]\n", b"loop: &b {x: *b}\n"]))
    return data


raw_files = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", errors="surrogatepass")),
)

# --- what must hold -------------------------------------------------------------------------


def strict_json(value: Any) -> None:
    """What a JSON column on PostgreSQL takes: no NaN or Infinity, UTF-8 text."""
    json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")


def usable_config(config: AuditorConfig, path: Path) -> None:
    """What `auditor run` and the daemon do with an accepted config before any request."""
    try:
        require_secrets(config, path)
    except AuditorError as exc:
        assert "\n" not in exc.one_line()
    Redactor.from_config(config)
    strict_json(config.budget.model_dump(mode="json"))
    for model in config.models:
        for p in model.providers:
            strict_json(p.public_view())
            strict_json({**p.params, "model": p.model})
            httpx.URL(p.base_url)
            OpenAICompatibleAdapter(p)  # builds the HTTP client: headers, URL, timeouts
    for entry in config.schedule:
        entry.interval(), entry.grace_time()
    for sink in config.alerts.sinks:
        httpx.URL(sink.url), httpx.URL(sink.public_url or "http://x")


def usable_suites(path: Path) -> None:
    for suite in validate_path(path):
        suite.hash  # noqa: B018
        for case in suite.cases:
            strict_json(case.model_dump(mode="json"))
        for request in expand_requests(suite):
            strict_json(request.model_dump(mode="json"))


def accepted_or_one_line(check: Any, path: Path) -> bool:
    """True if the file was accepted; a rejection must be an AuditorError of one line."""
    try:
        check(path)
    except AuditorError as exc:
        line = exc.one_line()
        assert line and "\n" not in line
        return False
    return True


def check_config_file(path: Path) -> bool:
    def load(p: Path) -> None:
        usable_config(load_config(p), p)

    return accepted_or_one_line(load, path)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUZZ_KEY", "sk-fuzz-0123456789")
    monkeypatch.setenv("FUZZ_TEAM", "team-0123456789")
    monkeypatch.setenv("FUZZ_HOOK", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    monkeypatch.delenv("FUZZ_UNSET_VARIABLE", raising=False)


SUPPRESS = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


def test_the_valid_documents_are_valid(tmp_path: Path, env: None) -> None:
    path = tmp_path / "providers.yaml"
    path.write_text(to_text(VALID_CONFIG))
    assert check_config_file(path)
    suite = tmp_path / "fuzz.yaml"
    suite.write_text(to_text(VALID_SUITE))
    assert accepted_or_one_line(usable_suites, suite)


@settings(max_examples=250, deadline=None, suppress_health_check=SUPPRESS)
@given(data=st.one_of(documents(VALID_CONFIG), raw_files))
@pytest.mark.slow
def test_config_files(tmp_path: Path, env: None, data: bytes) -> None:
    path = tmp_path / "providers.yaml"
    path.write_bytes(data)
    event("accepted" if check_config_file(path) else "refused")


@settings(max_examples=250, deadline=None, suppress_health_check=SUPPRESS)
@given(data=st.one_of(documents(VALID_SUITE), raw_files))
@pytest.mark.slow
def test_probe_files(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(data)
    event("accepted" if accepted_or_one_line(usable_suites, path) else "refused")


# --- the real CLI, on a bounded set of bad files -------------------------------------------


def _config_with(field: str, value: Any) -> str:
    doc = copy.deepcopy(VALID_CONFIG)
    doc["models"][0]["providers"][0][field] = value
    return to_text(doc)


BAD_CONFIGS = {
    "deep": "database: " + "[" * 5000 + "]" * 5000 + "\n",
    "recursive-alias": to_text(VALID_CONFIG) + "loop: &a [*a]\n",
    "huge-int": to_text(VALID_CONFIG).replace("concurrency: 2", "concurrency: " + "1" * 5000),
    "duration-overflow": to_text(VALID_CONFIG).replace("every: 1h", "every: 9999999999999d"),
    "infinite-timeout": _config_with("timeout_s", float("inf")),
    "date-params": _config_with("params", {"since": datetime.date(2001, 1, 1)}),
    "non-ascii-header": _config_with("headers", {"X-Title": "caf\u00e9 \u2615"}),
    "newline-header": _config_with("headers", {"X-Title": "value\n"}),
    "tab": to_text(VALID_CONFIG).replace("  - name: acme", "\t- name: acme"),
    "unset-variable": _config_with("headers", {"X": "${FUZZ_UNSET_VARIABLE}"}),
}
# Only `config validate` (which reads the probe directory) finds this one.
LONG_PROBES_DIR = to_text({**VALID_CONFIG, "probes_dir": "p" * 5000})
BAD_CONFIG_BYTES = {"non-utf8": b"database: sqlite:///a.db\nmodels: \xff\xfe\n"}
_SUITE_TEXT = to_text(VALID_SUITE)
BAD_PROBES = {
    "regex-overflow": _SUITE_TEXT.replace("regex: '[0-9]+'", "regex: 'a{99999999999}'"),
    "schema-unhashable": _SUITE_TEXT.replace("type: object\n", "$schema: []\n", 1),
    "regex-deep": _SUITE_TEXT.replace("regex: '[0-9]+'", f"regex: '{'(' * 2000}{')' * 2000}'"),
    "binary-metadata": _SUITE_TEXT.replace("k: v", "k: !!binary /w=="),
    "surrogate-prompt": _SUITE_TEXT.replace("prompt: Weather?", 'prompt: "\\ud800"'),
    "infinite-expect": _SUITE_TEXT.replace("number: 42", "number: .inf"),
    "duplicate-key": _SUITE_TEXT.replace("- id: add\n", "- id: add\n  id: add2\n"),
    "deep": "suite: s\ncases: " + "[" * 3000 + "]" * 3000 + "\n",
}


@pytest.mark.parametrize("name", [*BAD_CONFIGS, *BAD_CONFIG_BYTES])
def test_each_bad_config_is_refused_in_one_line(tmp_path: Path, env: None, name: str) -> None:
    text = {**BAD_CONFIGS, **BAD_CONFIG_BYTES}[name]
    path = tmp_path / "providers.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    assert not check_config_file(path)


@pytest.mark.parametrize("name", list(BAD_PROBES))
def test_each_bad_probe_file_is_refused_in_one_line(tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_text(BAD_PROBES[name])
    assert not accepted_or_one_line(usable_suites, path)


@pytest.mark.parametrize("value", ["sk-caf\u00e9", "sk-abc\n", "sk-\u2615"])
def test_a_key_no_header_can_carry_is_refused_without_showing_it(
    tmp_path: Path, env: None, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("FUZZ_KEY", value)
    path = tmp_path / "providers.yaml"
    path.write_text(to_text(VALID_CONFIG))
    with pytest.raises(AuditorError) as caught:
        require_secrets(load_config(path), path)
    line = caught.value.one_line()
    assert "FUZZ_KEY holds a value that is not printable ASCII" in line
    assert value.strip() not in line


# The CLI: a few of them (each run costs seconds of imports), through the console script.
CLI_CONFIGS = ["deep", "duration-overflow", "long-probes-dir"]
CLI_PROBES = ["regex-overflow", "surrogate-prompt"]


@pytest.mark.slow
def test_bad_files_through_the_cli(tmp_path: Path) -> None:
    (tmp_path / "probes").mkdir()
    (tmp_path / "probes" / "mini.yaml").write_text(yaml.safe_dump(MINI_SUITE))
    env = {
        "FUZZ_KEY": "sk-fuzz-0123456789",
        "FUZZ_TEAM": "team-0123456789",
        "FUZZ_HOOK": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    }
    jobs: list[tuple[str, list[str]]] = []
    for name in CLI_CONFIGS:
        path = tmp_path / f"{name}.yaml"
        path.write_text(BAD_CONFIGS.get(name, LONG_PROBES_DIR))
        jobs.append((name, ["config", "validate", "-c", str(path)]))
    for name in CLI_PROBES:
        path = tmp_path / "bad" / f"{name}.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(BAD_PROBES[name])
        jobs.append((name, ["probes", "validate", str(path)]))
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda job: run_auditor(*job[1], cwd=tmp_path, env=env), jobs))
    for (name, _), result in zip(jobs, results, strict=True):
        assert result.returncode == 2, (name, result.stderr)
        assert_one_line_error(result)
