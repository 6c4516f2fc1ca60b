"""providers.yaml parsing: what loads, and the one-line errors for what does not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from auditor.config import AuditorConfig, config_json_schema, load_config, require_secrets
from auditor.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]

MINIMAL = """\
database: sqlite:///auditor.db
reference: {engine: llama_cpp, model_path: packaged}
models:
  - name: smollm2-135m-instruct
    providers:
      - name: acme
        base_url: http://127.0.0.1:8101/v1
        model: smollm2-135m-instruct
        api_key_env: ACME_API_KEY
        requests_per_second: 5
        tokens_per_minute: 200000
        max_concurrency: 4
        timeout_s: 60
        params: {}
        headers: {}
        price: {input_per_mtok: 0.2, output_per_mtok: 0.6}
suites: [core]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "providers.yaml"
    path.write_text(text)
    return path


def test_issue_example_loads_with_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    provider = config.models[0].providers[0]
    assert provider.requests_per_second == 5
    assert provider.price is not None and provider.price.cost(1_000_000, 0) == pytest.approx(0.2)
    assert config.reference is not None and config.reference.engine == "llama_cpp"
    assert config.reference_for(config.models[0]) is config.reference


def test_repo_example_is_valid() -> None:
    config = load_config(ROOT / "providers.yaml")
    assert {p.name for p in config.models[0].providers} >= {"acme", "bolt"}
    assert all(p.base_url.startswith("http://127.0.0.1:") for p in config.models[0].providers)


def test_model_can_override_or_disable_reference(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "  - name: smollm2-135m-instruct\n",
        "  - name: smollm2-135m-instruct\n    reference: null\n",
    )
    config = load_config(write(tmp_path, text))
    assert config.reference_for(config.models[0]) is None


def test_profile_with_context_window_and_max_output_loads(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "    providers:\n",
        "    profile: {context_window: 8192, max_output: 2048}\n    providers:\n",
    )
    profile = load_config(write(tmp_path, text)).models[0].profile
    assert (profile.context_window, profile.max_output) == (8192, 2048)
    assert load_config(write(tmp_path, MINIMAL)).models[0].profile.context_window is None


@pytest.mark.parametrize("key", ["context_window", "max_output"])
@pytest.mark.parametrize("value", [0, -4096])
def test_profile_rejects_a_non_positive_length(tmp_path: Path, key: str, value: int) -> None:
    text = MINIMAL.replace("    providers:\n", f"    profile: {{{key}: {value}}}\n    providers:\n")
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert exc.value.field == f"models[0].profile.{key}"
    assert exc.value.line == 5
    assert "greater than 0" in exc.value.one_line()


def test_env_interpolation_and_missing_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = MINIMAL.replace("headers: {}", "headers: {X-Team: '${TEAM_TOKEN}'}")
    monkeypatch.setenv("TEAM_TOKEN", "t-123456")
    assert load_config(write(tmp_path, text)).models[0].providers[0].headers == {
        "X-Team": "t-123456"
    }
    monkeypatch.delenv("TEAM_TOKEN")
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, text))
    assert exc.value.field == "models[0].providers[0].headers.X-Team"
    assert exc.value.line == 15
    assert "TEAM_TOKEN" in exc.value.one_line()


def test_public_view_has_header_names_not_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEAM_TOKEN", "secret-value-42")
    text = MINIMAL.replace("headers: {}", "headers: {Authorization: 'Bearer ${TEAM_TOKEN}'}")
    provider = load_config(write(tmp_path, text)).models[0].providers[0]
    view = json.dumps(provider.public_view())
    assert "secret-value-42" not in view and "Authorization" in view


@pytest.mark.parametrize(
    ("old", "new", "field", "line", "words"),
    [
        (
            "timeout_s: 60",
            "timeout_s: 60\n        colour: blue",
            "models[0].providers[0].colour",
            14,
            "unknown key",
        ),
        (
            "requests_per_second: 5",
            "requests_per_second: fast",
            "models[0].providers[0].requests_per_second",
            10,
            "number",
        ),
        (
            "base_url: http://127.0.0.1:8101/v1",
            "base_url: ftp://x",
            "models[0].providers[0].base_url",
            7,
            "http",
        ),
        (
            "base_url: http://127.0.0.1:8101/v1",
            "base_url: 'http://127.0.0.1:99999/v1'",
            "models[0].providers[0].base_url",
            7,
            "port",
        ),
        (
            "model_path: packaged}",
            "model_path: packaged, gpu: 1}",
            "reference.gpu",
            2,
            "unknown key",
        ),
        ("database: sqlite:///auditor.db", "database: mysql://x", "database", 1, "sqlite"),
        (
            "        model: smollm2-135m-instruct\n",
            "",
            "models[0].providers[0].model",
            6,
            "required",
        ),
        (
            "api_key_env: ACME_API_KEY",
            "api_key_env: 'not a var'",
            "models[0].providers[0].api_key_env",
            9,
            "pattern",
        ),
    ],
)
def test_bad_fields_name_file_field_and_line(
    tmp_path: Path, old: str, new: str, field: str, line: int, words: str
) -> None:
    assert old in MINIMAL
    path = write(tmp_path, MINIMAL.replace(old, new))
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert exc.value.field == field
    assert exc.value.line == line
    text = exc.value.one_line()
    assert text.startswith(f"{path}:{line}: {field}: ")
    assert words in text.lower()
    assert "\n" not in text


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("suites: [core]", "suites: [core"))
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert "invalid YAML" in str(exc.value) and exc.value.line is not None


def test_duplicate_provider_names_rejected(tmp_path: Path) -> None:
    dup = MINIMAL.split("    providers:\n")[1].split("suites:")[0]
    text = MINIMAL.replace("suites: [core]", dup + "suites: [core]")
    with pytest.raises(ConfigError, match="unique"):
        load_config(write(tmp_path, text))


def test_missing_file_and_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(tmp_path, "- just\n- a list\n"))


def test_require_secrets_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, MINIMAL)
    config = load_config(path)
    monkeypatch.delenv("ACME_API_KEY", raising=False)
    with pytest.raises(ConfigError) as exc:
        require_secrets(config, path)
    assert exc.value.field == "models[0].providers[0].api_key_env" and exc.value.line == 9
    monkeypatch.setenv("ACME_API_KEY", "k")
    require_secrets(config, path)


def test_schema_describes_every_section() -> None:
    schema = config_json_schema()
    assert set(schema["properties"]) == set(AuditorConfig.model_fields)
    assert "ProviderConfig" in json.dumps(schema)
