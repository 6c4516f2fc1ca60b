"""What a demo fleet is made of: members (one fake provider each), their ports and faults.

A fleet is described by a `FleetSpec`, loadable from YAML or JSON. Each member is one
OpenAI-compatible server with at most one planted fault; `strength` tunes the fault and its
meaning depends on the fault (see `FAULT_STRENGTH`).
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from auditor.errors import InputFileError
from auditor.yamlfile import read_yaml, validate

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
]

#: What `strength` means for each fault that reads it, and its value when left at 0.
FAULT_STRENGTH: dict[str, tuple[str, float]] = {
    "flaky": ("fraction of chat requests answered 503 (0..1)", 0.0),
    "http_429": ("Retry-After seconds", 1.0),
    "hang": ("seconds to sleep before answering", 3600.0),
    "slow_drip": ("bytes per second of the response body", 8.0),
    "max_tokens_cap": ("completion token cap applied whatever the request asks", 16.0),
    "sampling_override": ("temperature forced on every request", 1.0),
    "truncate_context": ("prompt words kept (the most recent ones)", 64.0),
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

    @model_validator(mode="after")
    def _check_strength(self) -> FleetMember:
        if self.fault == "flaky" and self.strength > 1.0:
            raise ValueError("flaky strength is a fraction of requests and must be <= 1")
        return self

    def effective_strength(self) -> float:
        """`strength`, or the fault's default when it was left at 0."""
        default = FAULT_STRENGTH.get(self.fault, ("", 0.0))[1]
        return self.strength if self.strength > 0 else default


class FleetSpec(BaseModel):
    """A whole fleet, served from one process on a loopback address."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    members: list[FleetMember] = Field(min_length=1)
    seed: int = 0

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


def default_fleet(base_port: int = 8101) -> FleetSpec:
    """Two honest providers and a flaky one, on consecutive ports."""
    return FleetSpec(
        members=[
            FleetMember(name="acme", port=base_port),
            FleetMember(name="bolt", port=base_port + 1),
            FleetMember(name="flaky", port=base_port + 2, fault="flaky", strength=0.3),
        ]
    )


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
