"""The local demo fleet and the demo round.

The fleet is a distribution of its own (`auditor-fleet`, `pip install -e ./fleet`) that
depends on the auditor, never the other way: these commands import it when they run, after
`require_fleet()` has made its absence one line of error rather than a traceback.
"""

from __future__ import annotations

import importlib
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from auditor.cli.common import (
    FLEET_STATE,
    ConfigOpt,
    StateDirOpt,
    app,
    err,
    fleet_app,
    open_config,
    open_store,
    out,
    print_line,
)
from auditor.cli.results import run_rounds
from auditor.config import DEFAULT_CONFIG
from auditor.errors import UsageError

FLEET_PACKAGE = "auditor_fleet"
FLEET_INSTALL = "pip install -e ./fleet"


def require_fleet() -> None:
    """Import the demo fleet's package, or fail as a usage error naming how to install it."""
    try:
        importlib.import_module(FLEET_PACKAGE)
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.partition(".")[0] == FLEET_PACKAGE:
            raise UsageError(f"the demo fleet is not installed: {FLEET_INSTALL}") from None
        # installed, but without one of its own dependencies
        raise UsageError(f"the demo fleet needs {exc.name or exc}: {FLEET_INSTALL}") from None


@fleet_app.command("up")
def fleet_up_cmd(
    spec: Annotated[
        Path | None, typer.Option(help="Fleet spec (YAML); default: the demo fleet.")
    ] = None,
    base_port: Annotated[int, typer.Option(min=1024, max=65000)] = 8101,
    faults: Annotated[
        str | None,
        typer.Option(
            help="Only these members or faults, comma-separated, each optionally =STRENGTH "
            "(e.g. 'acme,persona=0.5,quantized'); a fault no member has adds one."
        ),
    ] = None,
    echo: Annotated[
        bool, typer.Option("--echo", help="The model-free fleet (echo backend), not the demo one.")
    ] = False,
    state_dir: StateDirOpt = FLEET_STATE,
) -> None:
    """Start the fleet in the background and wait until every member answers."""
    require_fleet()
    from auditor_fleet import default_fleet, echo_fleet, fleet_up, load_fleet_spec, pick_members
    from auditor_fleet.demo import build_weights

    if spec:
        fleet = load_fleet_spec(spec)
    else:
        fleet = echo_fleet(base_port) if echo else default_fleet(base_port)
    if faults:
        fleet = pick_members(fleet, [f for f in faults.split(",") if f.strip()])
    build_weights(fleet, lambda line: err.print(line, highlight=False))
    handle = fleet_up(fleet, state_dir, wait_s=120)
    for m in handle.members:
        print_line(f"{m.name}\t{m.fault}\t{m.base_url}")
    out.print(f"fleet pid {handle.pid}; stop it with `auditor fleet down`", highlight=False)


@fleet_app.command("down")
def fleet_down_cmd(state_dir: StateDirOpt = FLEET_STATE) -> None:
    """Stop the fleet started by `auditor fleet up`."""
    require_fleet()
    from auditor_fleet import fleet_down

    out.print("fleet stopped" if fleet_down(state_dir) else "no fleet was running")


@fleet_app.command("status")
def fleet_status_cmd(state_dir: StateDirOpt = FLEET_STATE) -> None:
    """Show the fleet's members and whether they answer."""
    require_fleet()
    from auditor_fleet import fleet_status

    status = fleet_status(state_dir)
    if status is None:
        out.print("no fleet")
        raise typer.Exit(1)
    for m in status.members:
        state = "up" if m.healthy else "down"
        print_line(f"{m.name}\t{m.fault}\t{m.base_url}\t{state}")


class Flavour(StrEnum):
    """Which demo: the fleet of model faults on the demo suite, or the reasoning fleet
    (an emulated reasoning model, request parameters, streamed tool calls, a router)."""

    standard = "standard"
    reasoning = "reasoning"


@app.command()
def demo(
    config_path: ConfigOpt = DEFAULT_CONFIG,
    state_dir: StateDirOpt = FLEET_STATE,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    faults: Annotated[
        str | None,
        typer.Option(help="Only these fleet members or faults (as for `auditor fleet up`)."),
    ] = None,
    base_port: Annotated[int, typer.Option(min=1024, max=65000)] = 8101,
    echo: Annotated[bool, typer.Option("--echo", help="The model-free fleet.")] = False,
    flavour: Annotated[
        Flavour,
        typer.Option(
            help="standard: the demo fleet on the demo suite; reasoning: an emulated "
            "reasoning model, request parameters, streamed tool calls and a router, each "
            "model on its own suite (demo-reasoning-providers.yaml)."
        ),
    ] = Flavour.standard,
) -> None:
    """Start the local fleet, run one round of the demo suite against it and the reference,
    and print each provider's planted fault beside the auditor's verdict.

    Uses providers.yaml if it exists, else writes demo-providers.yaml for the fleet. The
    database stays for `auditor report`, `auditor export` and friends.
    """
    import time

    require_fleet()
    from auditor_fleet import (
        default_fleet,
        echo_fleet,
        fleet_down,
        fleet_status,
        fleet_up,
        pick_members,
    )
    from auditor_fleet.demo import (
        REASONING_ROUNDS,
        build_weights,
        planted,
        print_demo_table,
        provider_times,
        providers_yaml,
        reasoning_fleet,
        reasoning_providers_yaml,
        spec_from_state,
    )

    reasoning = flavour == Flavour.reasoning
    if reasoning and echo:
        raise UsageError("--echo: the reasoning flavour needs the model; drop --echo")
    if reasoning:
        fleet = reasoning_fleet(base_port=base_port)
        rounds: tuple[tuple[str | None, str], ...] = REASONING_ROUNDS
    else:
        fleet = echo_fleet(base_port) if echo else default_fleet(base_port)
        rounds = ((None, "demo"),)
    if faults:
        fleet = pick_members(fleet, [f for f in faults.split(",") if f.strip()])
    if reasoning and config_path == DEFAULT_CONFIG:
        config_path = Path("demo-reasoning-providers.yaml")
        if not config_path.exists():
            config_path.write_text(reasoning_providers_yaml(fleet), encoding="utf-8")
            err.print(f"wrote {config_path} for the reasoning fleet", highlight=False)
    elif config_path == DEFAULT_CONFIG and not config_path.exists():
        config_path = Path("demo-providers.yaml")
        config_path.write_text(providers_yaml(fleet), encoding="utf-8")
        err.print(f"wrote {config_path} for the demo fleet", highlight=False)
    config = open_config(config_path)
    # The demo fleet checks no key; give the example's key variables a throwaway value.
    for m in config.models:
        for p in m.providers:
            if p.api_key_env:
                os.environ.setdefault(p.api_key_env, "demo-key-not-secret")
    status = fleet_status(state_dir)
    started = status is None or not status.running
    if not started:
        fleet = spec_from_state(state_dir) or fleet
    members = planted(fleet, [p for m in config.models for p in m.providers])
    if faults:  # only the providers behind the chosen members
        models = [
            m.model_copy(update={"providers": [p for p in m.providers if p.name in members]})
            for m in config.models
        ]
        config = config.model_copy(update={"models": [m for m in models if m.providers]})
        if not config.models:
            raise UsageError(f"--faults: no provider of {config_path} is one of those members")
    if started:
        build_weights(fleet, lambda line: err.print(line, highlight=False))
        err.print(f"starting the demo fleet ({len(fleet.members)} members) ...", highlight=False)
        fleet_up(fleet, state_dir, wait_s=120)
    else:
        assert status is not None
        err.print(f"using the fleet already running (pid {status.pid})", highlight=False)
    t0 = time.monotonic()
    store = open_store(config.database)
    findings, round_ids = [], []
    audited = {m.name for m in config.models}
    try:
        for model, suite in rounds:
            if model is not None and model not in audited:
                continue
            findings += run_rounds(config, config_path, suite, model, None, progress, True)
            if (row := store.last_round()) is not None:
                round_ids.append(row.id)
    finally:
        if started:
            fleet_down(state_dir)
    elapsed = time.monotonic() - t0
    seconds: dict[tuple[str, str], float] = {}
    for round_id in round_ids:
        seconds |= provider_times(store, round_id)
    title = "round" + "s" * (len(round_ids) != 1) + " " + ", ".join(round_ids or ["?"])
    print_demo_table(
        findings,
        members,
        seconds,
        out,
        f"planted faults and findings ({title}, {elapsed:.0f} s)",
    )
    out.print(
        f"results: {config.database} (try `auditor report`, `auditor export`, or "
        f"`auditor serve --database {config.database}` for the dashboard)",
        highlight=False,
    )
