"""What a demo fleet is made of: members (one fake provider each), their ports and faults.

A fleet is described by a `FleetSpec`, loadable from YAML or JSON. Each member is one
OpenAI-compatible server with at most one planted fault; `strength` tunes the fault and its
meaning depends on the fault (see `FAULT_STRENGTH`).
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from auditor.errors import InputFileError, UsageError
from auditor.yamlfile import read_yaml, validate
from auditor_fleet.variants import QTYPES, qtype_for_bits

DEFAULT_MODEL = "smollm2-135m-instruct"

Fault = Literal[
    # protocol-level: the HTTP exchange itself misbehaves
    "honest",
    "flaky",
    "http_401",
    "http_404",
    "http_429",
    "http_500",
    "html_error",
    "garbage",
    "truncated_json",
    "error_object",
    "hang",
    "reset",
    "slow_drip",
    # request-level: a well-formed answer to a silently altered request
    "wrong_model",
    "max_tokens_cap",
    "sampling_override",
    "drop_system",
    "inject_system",
    "truncate_context",
    "persona",
    # the server's own sampler settings, whatever the request says (top_k, top_p, min_p, ...)
    "sampler_defaults",
    # a context shorter than advertised: prompts over `strength` tokens refused, as vLLM does
    "context_limit",
    # a benchmark-tuned variant: listed prompts get their memorised answers (`memorized`)
    "memorized",
    # tool calling: the calls in the model's answer are not parsed, or parsed badly
    "tool_parser_raw",
    "tool_args_corrupt",
    # ... or streamed otherwise than answered whole
    "stream_tools_differ",
    # reasoning members (`reasoning`): the reasoning left in the content, the effort ignored
    "reasoning_leak",
    "effort_ignored",
    # request parameters silently dropped: structured output, the seed
    "drop_response_format",
    "ignore_seed",
    # a router (`router`) that answers from another upstream than the request pins
    "router_fallback",
    # model-level: need a model backend ("llama"); the weights or the prompt format differ
    "wrong_template",
    "quantized",
    "quantized_mix",
    "variant_mix",
]

#: Faults that act on the model itself (weights, prompt format): a model backend is needed.
MODEL_FAULTS = frozenset({"wrong_template", "quantized", "quantized_mix", "variant_mix"})
#: Faults whose strength is a fraction of requests.
FRACTION_FAULTS = frozenset(
    {
        "flaky",
        "persona",
        "wrong_template",
        "variant_mix",
        "quantized_mix",
        "tool_parser_raw",
        "tool_args_corrupt",
        "stream_tools_differ",
        "reasoning_leak",
        "router_fallback",
    }
)
#: Faults that act on a reasoning member's reasoning: the member needs `reasoning`.
REASONING_FAULTS = frozenset({"reasoning_leak", "effort_ignored"})
#: Faults that change the prompt the model sees; a member with `usage_as_sent` bills the
#: prompt as sent instead, which hides them from prompt-token accounting.
PROMPT_FAULTS = frozenset(
    {"persona", "inject_system", "drop_system", "truncate_context", "wrong_template"}
)
#: Faults served (always, or for a share of requests) by requantized weights (`qtype`).
QUANT_FAULTS = frozenset({"quantized", "quantized_mix"})
#: The requantized weights of `quantized_mix` when its member names no `qtype`.
DEFAULT_MIX_QTYPE = "Q2_K"
#: The sampler settings a `sampler_defaults` member may impose (llama.cpp's names).
SamplerKey = Literal["top_k", "top_p", "min_p", "repeat_penalty"]
#: What a `sampler_defaults` member imposes when its member says nothing: llama.cpp's server
#: defaults (llama-server started without sampling flags).
DEFAULT_SAMPLER: dict[str, float] = {"top_k": 40, "top_p": 0.95, "min_p": 0.05}
#: The range of a fleet spec's `n_ctx` (the model backends' context size).
MIN_N_CTX, MAX_N_CTX = 256, 32768
#: Logits noise (std, in logits) of a member that does not say: about what batching and
#: kernel choices on real GPU servers add. See docs/fleet.md for how it was measured.
DEFAULT_NOISE = 0.02

#: What `strength` means for each fault that reads it, and its value when left at 0.
FAULT_STRENGTH: dict[str, tuple[str, float]] = {
    "flaky": ("fraction of chat requests answered 503 with Retry-After: 1 (0..1)", 0.3),
    "http_429": ("Retry-After seconds", 1.0),
    "hang": ("seconds to sleep before answering", 3600.0),
    "slow_drip": ("bytes per second of the response body", 8.0),
    "max_tokens_cap": ("completion token cap applied whatever the request asks", 16.0),
    "sampling_override": ("temperature forced on every request (top_p forced to 1)", 1.0),
    "truncate_context": (
        "prompt tokens kept, the most recent ones (whitespace words for the echo backend)",
        64.0,
    ),
    "context_limit": (
        "prompt tokens accepted at most, as the member's chat template counts them (words + 4 "
        "a message for the echo backend); a longer chat prompt gets vLLM's 400",
        1024.0,
    ),
    "persona": ("fraction of chat requests given the hidden persona system prompt (0..1)", 1.0),
    "wrong_template": (
        "fraction of chat requests sent as raw 'User: ... Assistant:' text (0..1)",
        1.0,
    ),
    "quantized": (
        "bits per weight asked of llama.cpp: 2 (Q2_K), 3 (Q3_K_S), 4 (Q4_0), 5 (Q5_0), "
        "8 (Q8_0), the nearest; Q2_K and Q3_K_S give Q4_0 + Q3_K here (docs/fleet.md)",
        2.0,
    ),
    "variant_mix": ("fraction of chat requests answered by the perturbed variant (0..1)", 0.5),
    "quantized_mix": (
        "fraction of chat requests answered by the requantized weights (`qtype`, default "
        "Q2_K) (0..1)",
        0.35,
    ),
    "tool_parser_raw": (
        "fraction of requests with tools whose <tool_call> text is sent as plain content (0..1)",
        1.0,
    ),
    "tool_args_corrupt": (
        "fraction of requests with tools whose calls' arguments lose their last character (0..1)",
        1.0,
    ),
    "stream_tools_differ": (
        "fraction of streamed requests with tools whose streamed calls' arguments lose their "
        "last character (the same request answered whole keeps it) (0..1)",
        1.0,
    ),
    "reasoning_leak": (
        "fraction of requests whose reasoning is left in the content as "
        "<think>reasoning</think>, with no reasoning field (0..1)",
        1.0,
    ),
    "router_fallback": (
        "fraction of requests answered by the 'Fallback-Host' upstream although the request "
        "pins another and allows no fallbacks (0..1)",
        0.5,
    ),
}


class FleetSpecError(InputFileError):
    """A fleet spec file that cannot be read or validated."""


class FleetMember(BaseModel):
    """One fake provider: a name, a port and at most one planted fault."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)
    port: int = Field(ge=0, le=65535, description="0 picks a free port (in-process fleets only)")
    fault: Fault = "honest"
    strength: float = Field(default=0.0, ge=0.0)
    latency_ms: float = Field(default=0.0, ge=0.0)
    backend: str = "echo"
    models: list[str] = Field(default_factory=lambda: [DEFAULT_MODEL], min_length=1)
    memorized: dict[str, str | int | float] | Path | None = Field(
        default=None,
        description="the `memorized` fault's answers: a mapping of prompt text (the last user "
        "message) to the answer given instead of the model's, or a YAML file holding one "
        "(see auditor_fleet.memorized)",
    )
    noise: float = Field(
        default=DEFAULT_NOISE,
        ge=0.0,
        le=10.0,
        description="std of the Gaussian noise added to the logits before sampling, as real "
        "GPU serving does (model backends only; the echo backend ignores it)",
    )
    persona_text: str | None = Field(
        default=None,
        min_length=1,
        description="the `persona` fault's hidden system prompt (None: the built-in bubbly "
        "'experimental chat edition'); nothing the auditor sees carries it",
    )
    usage_as_sent: bool = Field(
        default=False,
        description="report usage.prompt_tokens as an honest member would count the request as "
        "sent (the model's chat template over the caller's messages, untruncated), so the "
        "prompt faults (persona, inject_system, drop_system, truncate_context, wrong_template) "
        "do not show in it; no effect on other faults, whose prompt is the one sent",
    )
    qtype: str | None = Field(
        default=None,
        description="llama.cpp quantization type of the requantized weights of `quantized` and "
        "`quantized_mix` (e.g. Q2_K, Q3_K_S, Q4_0; see auditor_fleet.variants.QTYPES); None: "
        "`quantized` reads bits from strength, `quantized_mix` uses Q2_K",
    )
    sampler: dict[SamplerKey, float] | None = Field(
        default=None,
        description="the `sampler_defaults` fault's settings, imposed on every sampled request "
        "(temperature > 0) whatever it asks: top_k (0: off), top_p, min_p (0: off), "
        "repeat_penalty (1: off); None: llama-server's defaults, DEFAULT_SAMPLER",
    )
    reasoning: Literal["reasoning", "reasoning_content"] | None = Field(
        default=None,
        description="serve the emulated reasoning model (auditor.providers.reasoning_emulation) "
        "and return its reasoning apart, in this message field: `reasoning` as vLLM >= 0.16, "
        "`reasoning_content` as llama.cpp's server and SGLang; None: the plain model",
    )
    router: bool = Field(
        default=False,
        description="answer as a router such as OpenRouter: every body and stream chunk names "
        "its upstream in a top-level `provider` (the one the request pins, else 'Primary'); "
        "`router_fallback` members are routers whatever this says",
    )

    @model_validator(mode="after")
    def _check_strength(self) -> FleetMember:
        if self.fault in FRACTION_FAULTS and self.strength > 1.0:
            raise ValueError(f"{self.fault} strength is a fraction of requests and must be <= 1")
        if self.fault == "context_limit" and self.strength != int(self.strength):
            raise ValueError("context_limit strength is a number of tokens, a whole number")
        if self.persona_text is not None and self.fault != "persona":
            raise ValueError(f"persona_text is the persona fault's, not {self.fault}'s")
        if self.qtype is not None:
            if self.fault not in QUANT_FAULTS:
                raise ValueError(f"qtype is for quantized and quantized_mix, not {self.fault}")
            if self.qtype not in QTYPES:
                raise ValueError(
                    f"qtype {self.qtype!r} is not one the fleet can build: {', '.join(QTYPES)}"
                )
            if self.fault == "quantized" and self.strength > 0:
                raise ValueError(
                    "quantized takes its weights from qtype or its bits from strength, not both"
                )
        if self.sampler is not None:
            if self.fault != "sampler_defaults":
                raise ValueError(f"sampler is the sampler_defaults fault's, not {self.fault}'s")
            _check_sampler(self.sampler)
        if self.fault == "memorized" and not self.memorized:
            raise ValueError(
                "fault memorized needs its answers: memorized: {prompt: answer} or a YAML file"
            )
        if self.fault in REASONING_FAULTS and self.reasoning is None:
            raise ValueError(
                f"fault {self.fault} acts on the reasoning and needs a reasoning member "
                "(reasoning: reasoning or reasoning_content)"
            )
        if self.fault in MODEL_FAULTS and self.backend == "echo":
            raise ValueError(
                f"fault {self.fault} acts on the model and needs a model backend "
                "(backend: llama), not echo"
            )
        return self

    def effective_strength(self) -> float:
        """`strength`, or the fault's default when it was left at 0."""
        default = FAULT_STRENGTH.get(self.fault, ("", 0.0))[1]
        return self.strength if self.strength > 0 else default

    def quant_type(self) -> str | None:
        """The llama.cpp type of this member's requantized weights (None: it has none)."""
        if self.fault == "quantized":
            return self.qtype or qtype_for_bits(self.effective_strength())
        if self.fault == "quantized_mix":
            return self.qtype or DEFAULT_MIX_QTYPE
        return None

    def is_router(self) -> bool:
        """Whether the member answers as a router, naming its upstream (`router`)."""
        return self.router or self.fault == "router_fallback"

    def sampler_settings(self) -> dict[str, float]:
        """What a `sampler_defaults` member imposes on sampled requests ({} for others)."""
        if self.fault != "sampler_defaults":
            return {}
        settings = DEFAULT_SAMPLER if self.sampler is None else self.sampler
        return {str(key): value for key, value in settings.items()}


def _check_sampler(sampler: dict[SamplerKey, float]) -> None:
    if not sampler:
        raise ValueError("sampler needs at least one of top_k, top_p, min_p, repeat_penalty")
    top_k = sampler.get("top_k")
    if top_k is not None and (top_k < 0 or top_k != int(top_k)):
        raise ValueError("sampler top_k must be a whole number >= 0 (0: off)")
    top_p = sampler.get("top_p")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError("sampler top_p must be in (0, 1]")
    min_p = sampler.get("min_p")
    if min_p is not None and not 0 <= min_p <= 1:
        raise ValueError("sampler min_p must be in [0, 1]")
    penalty = sampler.get("repeat_penalty")
    if penalty is not None and not 0 < penalty <= 10:
        raise ValueError("sampler repeat_penalty must be in (0, 10]")


class FleetSpec(BaseModel):
    """A whole fleet, served from one process on a loopback address."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    members: list[FleetMember] = Field(min_length=1)
    seed: int = 0
    n_ctx: int | None = Field(
        default=None,
        ge=MIN_N_CTX,
        le=MAX_N_CTX,
        description="context size (tokens) of the model backends' llama.cpp contexts, prompt "
        "and completion together; None: N_CTX (2048). The packaged model was trained on 8192; "
        "a context for a ladder of prompts up to 8192 tokens needs 8192 + the completion. "
        "Memory grows with it, most for requests with logprobs (n_ctx x vocabulary floats: "
        "1.6 GB at 8192). The echo backend has no context and ignores it",
    )

    @field_validator("host")
    @classmethod
    def _loopback_only(cls, host: str) -> str:
        if host == "localhost":
            return host
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"host must be a loopback IP address, not {host!r}") from None
        if not address.is_loopback:
            raise ValueError(f"host must be a loopback address (127.0.0.0/8 or ::1), not {host}")
        return host

    @model_validator(mode="after")
    def _unique(self) -> FleetSpec:
        names = [m.name for m in self.members]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise ValueError(f"member name {dup!r} is used twice")
        ports = [m.port for m in self.members if m.port]
        if len(set(ports)) != len(ports):
            dup_port = next(p for p in ports if ports.count(p) > 1)
            raise ValueError(f"port {dup_port} is used by two members")
        return self

    def member(self, name: str) -> FleetMember:
        for m in self.members:
            if m.name == name:
                return m
        raise KeyError(f"no fleet member named {name!r}")


def base_url(host: str, port: int) -> str:
    """The OpenAI-style base URL (ending in /v1) of a member listening on host:port."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/v1"


#: The demo fleet: (name, fault, strength). Strength 0 means the fault's default.
DEMO_MEMBERS: tuple[tuple[str, Fault, float], ...] = (
    ("acme", "honest", 0.0),
    ("bolt", "honest", 0.0),
    ("cobalt", "sampling_override", 1.0),
    ("dune", "truncate_context", 256.0),
    ("ember", "persona", 1.0),
    ("fjord", "quantized", 2.0),
    ("garnet", "wrong_template", 1.0),
    ("harbor", "max_tokens_cap", 32.0),
    ("iris", "drop_system", 0.0),
    ("juniper", "variant_mix", 0.5),
    ("kite", "flaky", 0.3),
)


def default_fleet(base_port: int = 8101) -> FleetSpec:
    """The demo fleet, backed by the packaged model: two honest providers and one per planted
    fault, on consecutive ports. All members share one process and each set of weights."""
    return FleetSpec(
        members=[
            FleetMember(
                name=name, port=base_port + i, fault=fault, strength=strength, backend="llama"
            )
            for i, (name, fault, strength) in enumerate(DEMO_MEMBERS)
        ]
    )


def echo_fleet(base_port: int = 8101) -> FleetSpec:
    """The model-free fleet (tests, benchmarks): two honest providers and a flaky one."""
    return FleetSpec(
        members=[
            FleetMember(name="acme", port=base_port),
            FleetMember(name="bolt", port=base_port + 1),
            FleetMember(name="flaky", port=base_port + 2, fault="flaky", strength=0.3),
        ]
    )


def pick_members(spec: FleetSpec, picks: list[str]) -> FleetSpec:
    """A fleet of the members of `spec` named by `picks`, in the order of `spec`.

    Each pick is `KEY` or `KEY=STRENGTH`, where KEY is a member name or a fault: a fault
    picks every member planted with it, or, if none is, adds a member named after the
    fault on the next free port (with the backend of the spec's first member; a reasoning
    member, `reasoning: reasoning`, for a fault of `REASONING_FAULTS`).
    """
    chosen: dict[str, dict[str, Any]] = {}
    order = [m.name for m in spec.members]
    faults = set(get_args(Fault))
    next_port = max(m.port for m in spec.members) + 1
    for pick in picks:
        key, _, value = pick.strip().partition("=")
        key = key.strip()
        try:
            strength = float(value) if value else None
        except ValueError:
            raise UsageError(f"--faults: {pick!r}: strength must be a number") from None
        matched = [m.model_dump() for m in spec.members if key in (m.name, m.fault)]
        if not matched and key in faults:
            name = key.replace("_", "-")
            port = next_port if spec.members[0].port else 0
            next_port += 1
            order.append(name)
            added: dict[str, Any] = {
                "name": name,
                "port": port,
                "fault": key,
                "backend": spec.members[0].backend,
            }
            if key in REASONING_FAULTS:  # a reasoning fault needs a reasoning member
                added["reasoning"] = "reasoning"
            matched = [added]
        if not matched:
            known = ", ".join(m.name for m in spec.members)
            raise UsageError(f"--faults: {key!r} is neither a member ({known}) nor a fault")
        for fields in matched:
            if strength is not None:
                fields["strength"] = strength
            chosen[fields["name"]] = fields
    try:
        members = [FleetMember.model_validate(chosen[n]) for n in order if n in chosen]
    except ValidationError as exc:
        message = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise UsageError(f"--faults: {message}") from None
    return spec.model_copy(update={"members": members})


def load_fleet_spec(path: Path) -> FleetSpec:
    """Read a fleet spec from a YAML or JSON file (JSON is YAML, so one parser serves)."""
    data, node = read_yaml(path, FleetSpecError)
    return validate(FleetSpec, data, path, node, FleetSpecError)


def parse_fleet_spec(text: str) -> FleetSpec:
    """A fleet spec given inline as JSON (e.g. on a command line)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FleetSpecError("<argv>", f"invalid JSON: {exc.msg}") from None
    return validate(FleetSpec, data, Path("<argv>"), None, FleetSpecError)
