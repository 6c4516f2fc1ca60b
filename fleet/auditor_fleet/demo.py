"""The pieces of `auditor demo`: which diagnosis each planted fault should get, the reasoning
fleet, a providers file for a fleet, the weights a fleet needs, and the table that sets
findings beside the faults that were planted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rich.console import Console
from rich.table import Table

from auditor_fleet.spec import DEFAULT_MODEL, Fault, FleetMember, FleetSpec, base_url

#: Planted fault -> (the verdict the auditor should reach, the diagnosis kind it should give).
#: The kinds are those of the report contract; None means no diagnosis (nothing is wrong
#: with the model served, or nothing could be judged).
EXPECTED: dict[str, tuple[str, str | None]] = {
    "honest": ("consistent", None),
    "flaky": ("consistent", None),  # errors are counted and retried, the answers are honest
    "sampling_override": ("deviant", "sampling_params"),
    "sampler_defaults": ("deviant", "sampling_params"),
    "truncate_context": ("deviant", "context_truncation"),
    "context_limit": ("deviant", "context_truncation"),  # on a suite with a context ladder
    "persona": ("deviant", "system_prompt"),
    "inject_system": ("deviant", "system_prompt"),
    "drop_system": ("deviant", "system_prompt"),
    "wrong_template": ("deviant", "chat_template"),
    "max_tokens_cap": ("deviant", "max_tokens"),
    "quantized": ("deviant", "quantization"),
    "quantized_mix": ("deviant", "quantization"),
    "variant_mix": ("deviant", "model_variant"),
    "memorized": ("deviant", "model_variant"),  # on a suite with perturbed pairs (deep)
    "wrong_model": ("deviant", "other"),
    "tool_parser_raw": ("deviant", "tool_calling"),  # on a suite with tools (probes/tools.yaml)
    "tool_args_corrupt": ("deviant", "tool_calling"),
    "stream_tools_differ": ("deviant", "tool_calling"),  # on streamed requests with tools
    # the reasoning fleet's (`reasoning_fleet`): reasoning members, parameters, routers
    "reasoning_leak": ("deviant", "reasoning"),
    "effort_ignored": ("deviant", "reasoning"),
    "drop_response_format": ("deviant", "other"),  # the summary names the parameter
    "ignore_seed": ("deviant", "sampling_params"),
    "router_fallback": ("deviant", "other"),
    # protocol faults: no answer to judge
    "http_401": ("unavailable", None),
    "http_404": ("unavailable", None),
    "http_429": ("unavailable", None),
    "http_500": ("unavailable", None),
    "html_error": ("unavailable", None),
    "garbage": ("unavailable", None),
    "truncated_json": ("unavailable", None),
    "error_object": ("unavailable", None),
    "hang": ("unavailable", None),
    "reset": ("unavailable", None),
    "slow_drip": ("unavailable", None),
}


#: The model the reasoning fleet's reasoning members serve: the packaged weights as the
#: emulated reasoning model (`auditor.providers.reasoning_emulation`).
THINKING_MODEL = "smollm2-135m-thinking"
_THINKING: dict[str, Any] = {"models": [THINKING_MODEL]}
#: The reasoning fleet: (name, fault, the member's other fields). The reasoning members
#: serve the emulated reasoning model, the honest pair one in each reasoning field; the
#: others serve the plain model, where what is audited is the request's parameters, the
#: streamed tool calls and the router (whose honest twin is yuzu).
REASONING_MEMBERS: tuple[tuple[str, Fault, dict[str, Any]], ...] = (
    ("lisbon", "honest", {"reasoning": "reasoning", **_THINKING}),
    ("oslo", "honest", {"reasoning": "reasoning_content", **_THINKING}),
    ("quince", "reasoning_leak", {"reasoning": "reasoning", **_THINKING}),
    ("rambutan", "effort_ignored", {"reasoning": "reasoning", **_THINKING}),
    ("sapporo", "drop_response_format", {}),
    ("tamarind", "ignore_seed", {}),
    ("utrecht", "stream_tools_differ", {}),
    ("verona", "router_fallback", {}),
    ("yuzu", "honest", {"router": True}),
)
#: Each model of the reasoning fleet and the suite it is audited with.
REASONING_ROUNDS = ((THINKING_MODEL, "demo-reasoning"), (DEFAULT_MODEL, "demo-params"))


def reasoning_fleet(host: str = "127.0.0.1", base_port: int = 8101) -> FleetSpec:
    """The reasoning fleet, for `auditor demo --flavour reasoning`: the packaged model served
    as the emulated reasoning model (`auditor_fleet.reasoning`) by two honest members (one
    per reasoning field), one member per fault of reasoning, structured output, seeds,
    streamed tool calls and routing, and an honest router; consecutive ports from
    `base_port`, the demo fleet's default noise."""
    return FleetSpec(
        host=host,
        members=[
            FleetMember(name=name, port=base_port + i, fault=fault, backend="llama", **fields)
            for i, (name, fault, fields) in enumerate(REASONING_MEMBERS)
        ],
    )


def reasoning_providers_yaml(
    spec: FleetSpec, database: str = "sqlite:///auditor-reasoning.db"
) -> str:
    """A providers file for the reasoning fleet: the reasoning members under the emulated
    reasoning model (its profile's levels, the reference running the same emulation), the
    others under the plain model, every router pinned to one upstream."""
    reference = "{engine: llama_cpp, model_path: packaged, n_threads: 1, scoring_threads: 2"
    lines = [
        "# Generated by `auditor demo --flavour reasoning` from its fleet; edit freely.",
        f"database: {database}",
        f"reference: {reference}}}",
        "suites: [demo-reasoning, demo-params]",
        "models:",
    ]
    for model, _ in REASONING_ROUNDS:
        members = [m for m in spec.members if m.models[0] == model]
        if not members:
            continue
        lines.append(f"  - name: {model}")
        if model == THINKING_MODEL:
            lines += [
                f"    reference: {reference}, emulate_reasoning: {{}}}}",
                "    profile:",
                "      reasoning: {levels: [low, medium, high], budget: 96}",
            ]
        lines.append("    providers:")
        for m in members:
            lines += [
                f"      - name: {m.name}",
                f"        base_url: {base_url(spec.host, m.port)}",
                f"        model: {model}",
                "        max_concurrency: 2",
                "        requests_per_second: 20",
                "        timeout_s: 300",
            ]
            if m.router or m.fault == "router_fallback":
                lines.append(
                    "        params: {provider: {only: [primary], allow_fallbacks: false}}"
                )
    return "\n".join(lines) + "\n"


def providers_yaml(spec: FleetSpec, database: str = "sqlite:///auditor.db") -> str:
    """A providers.yaml for `spec`: every member a provider, the `demo` suite, the packaged
    model as reference (one thread: the fleet's model runs beside it on 2 cores)."""
    lines = [
        "# Generated by `auditor demo` from its fleet; edit freely (see providers.yaml).",
        f"database: {database}",
        "reference: {engine: llama_cpp, model_path: packaged, n_threads: 1, scoring_threads: 2}",
        "suites: [demo]",
        "models:",
        f"  - name: {DEFAULT_MODEL}",
        "    providers:",
    ]
    for i, m in enumerate(spec.members):
        lines += [
            f"      - name: {m.name}",
            f"        base_url: {base_url(spec.host, m.port)}",
            f"        model: {m.models[0]}",
            "        max_concurrency: 2",
            "        requests_per_second: 20",
            "        timeout_s: 300",
        ]
        if i == 1:
            lines.append("        stream: true")
    return "\n".join(lines) + "\n"


def planted(spec: FleetSpec, providers: list[Any]) -> dict[str, FleetMember]:
    """Provider name -> the fleet member behind it, matched by port (else by name)."""
    by_port = {m.port: m for m in spec.members}
    by_name = {m.name: m for m in spec.members}
    out: dict[str, FleetMember] = {}
    for p in providers:
        parts = urlsplit(p.base_url)
        member = None
        if parts.hostname in (spec.host, "localhost", "127.0.0.1"):
            member = by_port.get(parts.port or 0)
        member = member or by_name.get(p.name)
        if member is not None:
            out[p.name] = member
    return out


def build_weights(spec: FleetSpec, say: Callable[[str], None]) -> None:
    """Build (once, cached) every weights variant the fleet's model members need, so the
    fleet process starts at once; `say` reports each build."""
    from auditor.providers.llama_cpp import packaged_model_path
    from auditor_fleet import variants

    model_members = [m for m in spec.members if m.backend == "llama"]
    if not model_members:
        return
    src = packaged_model_path()
    for m in model_members:
        qtype = m.quant_type()  # quantized, quantized_mix
        if qtype is not None:
            if variants.requantized_path(src, qtype).is_file():
                continue
            say(f"building the {qtype} weights for {m.name} (once; cached) ...")
            t0 = time.monotonic()
            variants.requantize(src, qtype)
        elif m.fault == "variant_mix":
            if variants.perturbed_path(src).is_file():
                continue
            say(f"building the perturbed weights for {m.name} (once; cached) ...")
            t0 = time.monotonic()
            variants.perturb(src)
        else:
            continue
        say(f"  built in {time.monotonic() - t0:.1f} s")


def provider_times(store: Any, round_id: str) -> dict[tuple[str, str], float]:
    """(model, provider) -> seconds from its first request to its last answer in the round."""
    spans: dict[tuple[str, str], tuple[float, float]] = {}
    for sample, provider in store.iter_samples(round_id):
        start = sample.started_at.timestamp()
        end = start + (sample.latency_ms or 0.0) / 1000
        key = (provider.model, provider.name)
        first, last = spans.get(key, (start, end))
        spans[key] = (min(first, start), max(last, end))
    return {key: last - first for key, (first, last) in spans.items()}


def print_demo_table(
    findings: list[Any],
    members: dict[str, FleetMember],
    seconds: dict[tuple[str, str], float],
    console: Console,
    title: str,
) -> None:
    """One row per provider: planted fault, what the auditor should say and what it said.

    `seconds` is each provider's time in the round (see `provider_times`)."""
    table = Table(title=title, title_justify="left")
    for col in ("provider", "planted fault", "expected", "verdict", "diagnosis"):
        table.add_column(col)
    for col in ("requests", "tokens", "time"):
        table.add_column(col, justify="right")
    colors = {"consistent": "green", "deviant": "red", "unavailable": "yellow"}
    for f in findings:
        member = members.get(f.provider)
        fault = member.fault if member else "-"
        if member and member.strength:
            fault += f" ({member.strength:g})"
        verdict, kind = EXPECTED.get(member.fault, ("?", None)) if member else ("?", None)
        expected = verdict if kind is None else f"{verdict}: {kind}"
        said = "; ".join(f"{d.kind} ({d.confidence:.2f})" for d in f.diagnoses) or "-"
        color = colors.get(f.verdict, "cyan")
        table.add_row(
            f.provider,
            fault,
            expected,
            f"[{color}]{f.verdict}[/]",
            said,
            str(f.requests),
            str(f.tokens),
            f"{seconds.get((f.model, f.provider), 0.0):.0f} s",
        )
    console.print(table)


def spec_from_state(state_dir: Path) -> FleetSpec | None:
    """The spec of the fleet `auditor fleet up` started in `state_dir`, if it left one."""
    from auditor_fleet.process import SPEC_FILE
    from auditor_fleet.spec import load_fleet_spec

    path = Path(state_dir) / SPEC_FILE
    return load_fleet_spec(path) if path.is_file() else None
