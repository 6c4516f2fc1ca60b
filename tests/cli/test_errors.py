"""Bad input ends in exit code 2 and one clear line naming the file and field, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from helpers.cli import assert_one_line_error, run_auditor, write_config


@pytest.fixture
def config(tmp_path: Path) -> Path:
    providers = [
        {
            "name": "acme",
            "base_url": "http://127.0.0.1:9/v1",
            "model": "m",
            "api_key_env": "ACME_KEY_T",
        }
    ]
    return write_config(tmp_path, providers, f"sqlite:///{tmp_path / 'a.db'}")


def edit(config: Path, old: str, new: str) -> Path:
    text = config.read_text()
    assert old in text
    config.write_text(text.replace(old, new))
    return config


@pytest.mark.parametrize(
    ("old", "new", "fragments"),
    [
        (
            "suites:\n- mini",
            "suites:\n- mini\n- nonesuch",
            ["providers.yaml:5", "suites[1]", "unknown suite 'nonesuch'"],
        ),
        ("base_url: http://127.0.0.1:9/v1", "base_url: localhost:9", ["base_url", "http"]),
        ("database: sqlite", "database: [sqlite", ["invalid YAML"]),
        (
            "name: acme",
            "name: acme\n    max_concurrency: -1",
            ["models[0].providers[0].max_concurrency"],
        ),
    ],
)
def test_bad_config_for_run(config: Path, old: str, new: str, fragments: list[str]) -> None:
    edit(config, old, new)
    result = run_auditor("run", "-c", str(config), cwd=config.parent, env={"ACME_KEY_T": "k"})
    assert_one_line_error(result, str(config), *fragments)


@pytest.mark.slow
def test_missing_key_variable_names_it(config: Path) -> None:
    result = run_auditor("run", "-c", str(config), cwd=config.parent, env={"ACME_KEY_T": ""})
    assert_one_line_error(result, "api_key_env", "ACME_KEY_T", "is not set")
    result = run_auditor("config", "validate", "-c", str(config), cwd=config.parent)
    assert_one_line_error(result, "ACME_KEY_T")


def test_unknown_key_names_field_and_line(config: Path) -> None:
    data = yaml.safe_load(config.read_text())
    data["models"][0]["providers"][0]["colour"] = "red"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    result = run_auditor("run", "-c", str(config), cwd=config.parent, env={"ACME_KEY_T": "k"})
    assert_one_line_error(result, "models[0].providers[0].colour", "unknown key")


@pytest.mark.slow
def test_unknown_suite_flag_and_missing_file(config: Path) -> None:
    env = {"ACME_KEY_T": "k"}
    result = run_auditor("run", "-c", str(config), "--suite", "nope", cwd=config.parent, env=env)
    assert_one_line_error(result, "--suite", "unknown suite 'nope'", "mini")
    result = run_auditor("run", "-c", str(config.parent / "absent.yaml"), cwd=config.parent)
    assert_one_line_error(result, "absent.yaml", "file not found")


def test_bad_probe_file(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        "suite: x\ncases:\n  - id: a\n    prompt: hi\n    expect: {number: 1, exact: '1'}\n"
    )
    result = run_auditor("probes", "validate", str(tmp_path / "bad.yaml"), cwd=tmp_path)
    assert_one_line_error(result, "bad.yaml:5", "cases[0].expect", "exactly one")


LADDER = "suite: lad\ncases:\n  - id: ladder\n    generator:\n      name: context_ladder\n"


@pytest.mark.parametrize(
    ("params", "profile", "fragments"),
    [
        # Checked when the file is loaded, though the window comes from each model's profile.
        (
            "{tasks: [needle, haystack]}",
            {"context_window": 8192},
            ["lad.yaml:6", "cases[0].generator.params.tasks[1]", "'aggregation'"],
        ),
        (
            "{seed: 1}",
            {"context_window": 128},
            [
                "lad.yaml:5",
                "cases[0].generator.params.fractions",
                "case 'ladder' for model 'smollm2-135m-instruct' (window 128 from its "
                "profile.context_window): no rung reaches min_tokens",
            ],
        ),
        (
            "{seed: 1}",
            {},
            ["suite 'lad' has nothing to send to model 'smollm2-135m-instruct'", "context_window"],
        ),
    ],
)
def test_bad_ladder_settings_stop_run_and_config_validate(
    config: Path, params: str, profile: dict[str, int], fragments: list[str]
) -> None:
    (config.parent / "probes" / "lad.yaml").write_text(f"{LADDER}      params: {params}\n")
    data = yaml.safe_load(config.read_text())
    data["suites"] = ["lad"]
    data["models"][0]["profile"] = profile
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    for command in ("run", "config validate"):
        result = run_auditor(
            *command.split(), "-c", str(config), cwd=config.parent, env={"ACME_KEY_T": "k"}
        )
        assert_one_line_error(result, *fragments)
    assert not (config.parent / "a.db").exists()  # stopped before any round


@pytest.mark.slow
def test_usage_errors(config: Path) -> None:
    result = run_auditor("run", "-c", str(config), "--fail-on", "sometimes", cwd=config.parent)
    assert_one_line_error(result, "--fail-on")
    result = run_auditor("report", "-c", str(config), "--round", "nope", cwd=config.parent)
    assert_one_line_error(result, "--round", "nope")
    result = run_auditor("frobnicate", cwd=config.parent)
    assert_one_line_error(result, "frobnicate")
    result = run_auditor("report", "--database", "oracle://x", cwd=config.parent)
    assert_one_line_error(result, "database")


def test_unreachable_postgres_is_one_line(tmp_path: Path) -> None:
    result = run_auditor(
        "report", "--database", "postgresql+psycopg://nobody@127.0.0.1:1/x", cwd=tmp_path
    )
    assert_one_line_error(result, "database", "cannot connect")
