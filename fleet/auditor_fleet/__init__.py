"""The local demo fleet: OpenAI-compatible servers on 127.0.0.1 with planted faults.

`spec` says what the fleet is, `backends` what answers (`echo`, model-free; `llama`, the
packaged model, in `llama_backend`, on weights from `variants`), `server` how one member
speaks HTTP (and misbehaves), `process` how a whole fleet runs. docs/fleet.md has the
planted faults and the diagnosis each should get.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from auditor_fleet.backends import (
    Backend,
    BackendError,
    ChatMessage,
    ChatRequest,
    CompletionLogprobs,
    EchoBackend,
    Generation,
    TextCompletion,
    TextCompletionRequest,
    TokenLogprob,
    TopLogprob,
    backends,
)
from auditor_fleet.llama_backend import LlamaBackend  # registers the "llama" backend
from auditor_fleet.server import build_app
from auditor_fleet.spec import (
    DEFAULT_MODEL,
    FAULT_STRENGTH,
    Fault,
    FleetMember,
    FleetSpec,
    FleetSpecError,
    default_fleet,
    echo_fleet,
    load_fleet_spec,
    pick_members,
)

if TYPE_CHECKING:
    from auditor_fleet.process import (
        FleetError,
        FleetHandle,
        FleetStatus,
        PortInUseError,
        fleet_down,
        fleet_status,
        fleet_up,
        free_port,
        running_fleet,
        serve_fleet,
    )

# Imported lazily, so that `python -m auditor_fleet.process` does not find its own module
# already imported by this package (runpy warns about that).
_PROCESS_NAMES = {
    "FleetError",
    "FleetHandle",
    "FleetStatus",
    "PortInUseError",
    "fleet_down",
    "fleet_status",
    "fleet_up",
    "free_port",
    "running_fleet",
    "serve_fleet",
}


def __getattr__(name: str) -> Any:
    if name in _PROCESS_NAMES:
        from auditor_fleet import process

        return getattr(process, name)
    raise AttributeError(f"module 'auditor_fleet' has no attribute {name!r}")


__all__ = [
    "DEFAULT_MODEL",
    "FAULT_STRENGTH",
    "Backend",
    "BackendError",
    "ChatMessage",
    "ChatRequest",
    "CompletionLogprobs",
    "EchoBackend",
    "Fault",
    "FleetError",
    "FleetHandle",
    "FleetMember",
    "FleetSpec",
    "FleetSpecError",
    "FleetStatus",
    "Generation",
    "LlamaBackend",
    "PortInUseError",
    "TextCompletion",
    "TextCompletionRequest",
    "TokenLogprob",
    "TopLogprob",
    "backends",
    "build_app",
    "default_fleet",
    "echo_fleet",
    "fleet_down",
    "fleet_status",
    "fleet_up",
    "free_port",
    "load_fleet_spec",
    "pick_members",
    "running_fleet",
    "serve_fleet",
]
