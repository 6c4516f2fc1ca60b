"""providers.yaml -> typed, validated configuration.

The whole file is one pydantic model (`AuditorConfig`), published as JSON Schema by
`auditor config schema`. Secrets are only ever named (`api_key_env`, `${VAR}`); their values
are read from the environment when a client is built and are never stored or printed.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from auditor.errors import ConfigError
from auditor.operations.settings import (
    AlertsConfig,
    DaemonConfig,
    ScheduleEntry,
    ServerConfig,
    parsable_url,
)
from auditor.providers.reasoning_emulation import EmulatedReasoning
from auditor.records import RequestParams
from auditor.yamlfile import field_path, line_of, read_yaml, validate

DEFAULT_CONFIG = Path("providers.yaml")
#: The numeric noise honest serving may add to the reference's logits (std, nats), unless a
#: model's profile or trusted providers say otherwise (`judging.noise_tolerance`).
DEFAULT_NOISE_TOLERANCE = 0.2
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Section(BaseModel):
    # NaN and infinity are refused: they cannot be stored as JSON (PostgreSQL).
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _check_http_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    try:
        parts.port  # noqa: B018  (raises on a malformed port)
    except ValueError as exc:
        raise ValueError(f"bad port in URL {url!r}") from exc
    return parsable_url(url.rstrip("/"))


HttpUrlText = Annotated[str, AfterValidator(_check_http_url)]
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_VALUE = re.compile(r"[\x20-\x7e]*")


def _plain_json(value: Any) -> Any:
    """Values sent as they are in a request body, and stored: JSON, finite numbers."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        raise ValueError("must be plain JSON (no NaN or infinity, dates, binary or sets)") from None
    return value


def _check_headers(headers: dict[str, str]) -> dict[str, str]:
    for name, value in headers.items():
        if not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"header name {name!r} is not an HTTP token")
        if not _HEADER_VALUE.fullmatch(value):  # the value is not shown: it may be a secret
            raise ValueError(f"header {name}: the value must be printable ASCII")
    return headers


class Price(Section):
    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (
            prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok
        ) / 1e6


class RetryPolicy(Section):
    """Retries on 429, 5xx and connection errors: exponential backoff with full jitter."""

    max_attempts: int = Field(default=4, ge=1, le=20)
    backoff_base_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=20.0, gt=0)
    max_total_s: float = Field(default=120.0, gt=0)


_DOTTED = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"


class ReasoningRequest(Section):
    """How a provider is asked for a reasoning effort level: the request field it goes in
    and, where it is not the level's own name, the value each level sends."""

    parameter: str = Field(
        default="reasoning_effort",
        pattern=_DOTTED,
        description="The request field the level goes in, dotted for a nested one: "
        "reasoning_effort (the OpenAI API; vLLM and SGLang for gpt-oss), reasoning.effort "
        "(OpenRouter), chat_template_kwargs.enable_thinking (a thinking switch: Qwen3, "
        "DeepSeek V3.1, GLM on vLLM, SGLang or llama.cpp's server).",
    )
    values: Annotated[dict[str, Any], AfterValidator(_plain_json)] = Field(
        default_factory=dict,
        description="What a level sends when not its own name; a thinking switch: "
        "{'off': false, 'on': true}.",
    )

    def body_fields(self, level: str) -> dict[str, Any]:
        """The request fields that ask for `level`, nested as `parameter` says."""
        *outer, last = self.parameter.split(".")
        fields: dict[str, Any] = {last: self.values.get(level, level)}
        for name in reversed(outer):
            fields = {name: fields}
        return fields


class ReasoningProfile(ReasoningRequest):
    """Whether and how the model reasons (its presence says it does)."""

    levels: list[str] = Field(
        default_factory=lambda: ["low", "medium", "high"],
        min_length=1,
        description="The effort levels a probe may ask for, lowest first. A probe naming a "
        "level the model lacks is not sent it.",
    )
    budget: int = Field(
        default=1024,
        gt=0,
        description="Output tokens the model may spend reasoning: added to every probe's "
        "max_tokens, which budgets the answer alone (reasoning spends max_tokens first).",
    )

    @model_validator(mode="after")
    def _values_name_levels(self) -> ReasoningProfile:
        unknown = sorted(set(self.values) - set(self.levels))
        if unknown:
            raise ValueError(f"values names levels not in levels: {', '.join(unknown)}")
        if len(set(self.levels)) != len(self.levels):
            raise ValueError("levels must be unique")
        return self


class ProviderConfig(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    base_url: HttpUrlText
    model: str
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    adapter: str = "openai"
    requests_per_second: float = Field(default=5.0, gt=0)
    burst: int = Field(default=1, ge=1, description="requests that may go out at once")
    tokens_per_minute: int | None = Field(default=None, gt=0)
    tokens_burst: int | None = Field(
        default=None, gt=0, description="tokens that may go out at once (default: tpm / 10)"
    )
    max_concurrency: int = Field(default=4, ge=1, le=1024)
    timeout_s: float = Field(default=60.0, gt=0)
    stream: bool = False
    params: Annotated[dict[str, Any], AfterValidator(_plain_json)] = Field(default_factory=dict)
    headers: Annotated[dict[str, str], AfterValidator(_check_headers)] = Field(default_factory=dict)
    price: Price | None = None
    trusted: bool = False
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    reasoning: ReasoningRequest | None = Field(
        default=None,
        description="How this provider takes a reasoning effort level, where it differs from "
        "the model profile's (a router: reasoning.effort). Fallback: the profile's reasoning.",
    )

    @model_validator(mode="after")
    def _tokens_burst_needs_a_rate(self) -> ProviderConfig:
        if self.tokens_burst is not None and self.tokens_per_minute is None:
            raise ValueError("tokens_burst needs tokens_per_minute")
        return self

    def api_key(self) -> str | None:
        """The key's value from the environment (never stored; see `require_secrets`)."""
        return os.environ.get(self.api_key_env) if self.api_key_env else None

    def public_view(self) -> dict[str, Any]:
        """What may be stored or shown: everything but header values."""
        data = self.model_dump(mode="json", exclude={"headers"})
        data["header_names"] = sorted(self.headers)
        return data


class LlamaCppReference(Section):
    engine: Literal["llama_cpp"]
    model_path: str = "packaged"
    emulate_reasoning: EmulatedReasoning | None = Field(
        default=None,
        description="Run the weights as the demo's emulated reasoning model (a thinking pass "
        "whose budget follows the effort level, then the answer; "
        "auditor.providers.reasoning_emulation), its reasoning returned apart. For a model "
        "that does not reason; null: answer directly.",
    )
    n_ctx: int = Field(default=4096, ge=256)
    n_threads: int | None = Field(default=None, ge=1)
    # Threads for scoring the round's answers, which happens once every endpoint is done
    # (unset: n_threads). The demo runs the reference on 1 thread beside its fleet, then
    # scores on 2 once the fleet is idle.
    scoring_threads: int | None = Field(default=None, ge=1)
    seed: int = 0


class EndpointReference(Section):
    engine: Literal["endpoint"]
    base_url: HttpUrlText
    model: str
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    tokenizer_path: str | None = None
    timeout_s: float = Field(default=120.0, gt=0)
    max_concurrency: int = Field(default=4, ge=1)


ReferenceConfig = Annotated[LlamaCppReference | EndpointReference, Field(discriminator="engine")]


class Sampler(Section):
    """A sampler: the one a model's card recommends. Each field is optional."""

    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=0, description="0: no top-k cut")
    min_p: float | None = Field(default=None, ge=0, le=1, description="0: no min-p cut")
    repetition_penalty: float | None = Field(default=None, gt=0, le=10)

    def as_params(self) -> RequestParams:
        return RequestParams.model_validate(self.model_dump(exclude_none=True))


class ModelProfile(Section):
    """What the model is, as its card says. Every field is optional and says its fallback, so
    older files keep working."""

    sampler: Sampler | None = Field(
        default=None,
        description="The sampler the model card recommends. The reference samples with it and "
        "every sampled probe (temperature > 0) sends the fields it leaves unset, explicitly. "
        "Fallback: each probe's own temperature and top_p; top_k 0 and min_p 0 (no cut) and "
        "no repetition penalty, the full distribution.",
    )
    noise_tolerance: float | None = Field(
        default=None,
        gt=0,
        le=5,
        description="The numeric noise (logit std, nats) honest serving of this model may add "
        "to the reference's logits. Fallback: judging.noise_tolerance.",
    )
    context_window: int | None = Field(
        default=None,
        gt=0,
        description="The context window the model card advertises, in tokens (prompt and "
        "answer together): the window of every context_ladder probe case that leaves its "
        "window out. Fallback: such a case's fallback_window, else the model is not sent it.",
    )
    max_output: int | None = Field(
        default=None,
        gt=0,
        description="The most tokens the model card says one answer may hold: no probe asks "
        "for more (max_tokens is cut to it). Fallback: the lengths the probe file writes.",
    )
    reasoning: ReasoningProfile | None = Field(
        default=None,
        description="Whether and how the model reasons: its effort levels, the request field "
        "they go in, and the tokens it may spend reasoning. Fallback: it does not reason; "
        "probes asking for an effort level are not sent it, and max_tokens is as written.",
    )


class Judging(Section):
    """How providers are judged (README: How providers are judged)."""

    noise_tolerance: float = Field(
        default=DEFAULT_NOISE_TOLERANCE,
        gt=0,
        le=5,
        description="The numeric noise (logit std, nats) honest serving may add to the "
        "reference's logits: other kernels, batch sizes, precision. Greedy answers departing "
        "from the reference more than this allows are not honest noise. A model's "
        "profile.noise_tolerance overrides it; providers marked trusted replace it with the "
        "noise they show.",
    )


class ModelConfig(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-]*$")
    providers: list[ProviderConfig] = Field(min_length=1)
    reference: ReferenceConfig | Literal["default"] | None = "default"
    profile: ModelProfile = Field(default_factory=ModelProfile)

    @model_validator(mode="after")
    def _unique_providers(self) -> ModelConfig:
        names = [p.name for p in self.providers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"provider names must be unique within a model: {', '.join(dupes)}")
        if "reference" in names:
            raise ValueError("'reference' is reserved for the reference engine")
        return self

    def reasoning_request(self, provider: ProviderConfig) -> ReasoningRequest | None:
        """How `provider` is asked for an effort level (its own way, else the profile's);
        None: the model does not reason."""
        if self.profile.reasoning is None:
            return None
        return provider.reasoning or self.profile.reasoning


class Sequential(Section):
    """Ask in looks: after each, providers whose verdict is settled get no more requests;
    the others get `extra_samples` more samples of every case (and so does the reference).
    Every look tests at alpha / `looks`, so the false-alarm rate stays at alpha."""

    looks: int = Field(default=3, ge=2, le=10)
    extra_samples: int = Field(default=1, ge=1, le=100)
    consistent_p: float = Field(default=0.5, gt=0, le=1)
    futility_p: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="a provider with a single test below this (uncorrected) is not settled "
        "consistent before the last look: a weak signal gets more samples",
    )


class RoundBudget(Section):
    """A round stops cleanly once any of these is spent; unset means unlimited."""

    max_requests: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_cost: float | None = Field(default=None, gt=0)
    sequential: Sequential | None = None

    @property
    def looks(self) -> int:
        return self.sequential.looks if self.sequential else 1


class AuditorConfig(Section):
    database: str = "sqlite:///auditor.db"
    reference: ReferenceConfig | None = None
    models: list[ModelConfig] = Field(min_length=1)
    suites: list[str] = Field(default_factory=lambda: ["core"], min_length=1)
    probes_dir: str = "probes"
    budget: RoundBudget = Field(default_factory=RoundBudget)
    judging: Judging = Field(default_factory=Judging)
    schedule: list[ScheduleEntry] = Field(default_factory=list)  # for `auditor daemon`
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    daemon: DaemonConfig = Field(default_factory=DaemonConfig)

    @field_validator("database")
    @classmethod
    def _check_database(cls, v: str) -> str:
        if not re.match(r"^(sqlite|postgresql)(\+\w+)?://", v):
            raise ValueError("database must be a sqlite:/// or postgresql+psycopg:// URL")
        return v

    @model_validator(mode="after")
    def _unique_models(self) -> AuditorConfig:
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError("model names must be unique")
        return self

    def reference_for(self, model: ModelConfig) -> LlamaCppReference | EndpointReference | None:
        return self.reference if model.reference == "default" else model.reference

    def noise_tolerance(self, model: ModelConfig) -> float:
        """The numeric noise honest serving of `model` may add (profile, else judging)."""
        return model.profile.noise_tolerance or self.judging.noise_tolerance

    def model(self, name: str) -> ModelConfig:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(name)


def _interpolate(value: Any, path: Path, node: Any, loc: tuple[int | str, ...] = ()) -> Any:
    """Replace ${VAR} in every string with the environment's value."""
    if isinstance(value, dict):
        return {k: _interpolate(v, path, node, (*loc, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, path, node, (*loc, i)) for i, v in enumerate(value)]
    if isinstance(value, str):

        def sub(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise ConfigError(
                    str(path),
                    f"environment variable {name} is not set",
                    field=field_path(loc),
                    line=line_of(node, loc),
                )
            return os.environ[name]

        return _VAR.sub(sub, value)
    return value


def load_config(path: Path | str = DEFAULT_CONFIG) -> AuditorConfig:
    path = Path(path)
    data, node = read_yaml(path, ConfigError)
    if not isinstance(data, dict):
        raise ConfigError(str(path), "expected a mapping with 'models' at the top level")
    try:
        data = _interpolate(data, path, node)
    except RecursionError:  # an alias inside itself: `a: &x [*x]`
        raise ConfigError(str(path), "nested too deeply (a recursive alias?)") from None
    return validate(AuditorConfig, data, path, node, ConfigError)


def require_secrets(config: AuditorConfig, path: Path | str, model: str | None = None) -> None:
    """Fail with one line if a provider's key variable is named but not set (or holds what
    no HTTP header can carry: the value is not shown)."""
    _, node = read_yaml(Path(path), ConfigError)
    for mi, m in enumerate(config.models):
        if model and m.name != model:
            continue
        for pi, p in enumerate(m.providers):
            key = os.environ.get(p.api_key_env or "")
            if p.api_key_env and not (key and _HEADER_VALUE.fullmatch(key)):
                loc = ("models", mi, "providers", pi, "api_key_env")
                why = "holds a value that is not printable ASCII" if key else "is not set"
                raise ConfigError(
                    str(path),
                    f"environment variable {p.api_key_env} {why}",
                    field=f"models[{mi}].providers[{pi}].api_key_env",
                    line=line_of(node, loc),
                )


def config_json_schema() -> dict[str, Any]:
    return AuditorConfig.model_json_schema()
