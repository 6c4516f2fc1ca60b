"""Running unattended: the daemon, and the incidents it opens."""

from __future__ import annotations

import asyncio
import getpass
import os
from datetime import timedelta
from typing import Annotated

import typer

from auditor import logs
from auditor.alerts import incidents
from auditor.cli.common import (
    ConfigOpt,
    DatabaseOpt,
    app,
    database_url,
    incidents_app,
    open_store,
    out,
    print_line,
    probes_dir_of,
    web_token,
)
from auditor.config import DEFAULT_CONFIG, load_config
from auditor.errors import ConfigError, UsageError
from auditor.operations.settings import parse_duration
from auditor.records import utcnow
from auditor.secrets import Redactor
from auditor.yamlfile import line_of, read_yaml


@app.command()
def daemon(config_path: ConfigOpt = DEFAULT_CONFIG, database: DatabaseOpt = None) -> None:
    """Run the config's schedule unattended: rounds, incidents, webhook alerts, /metrics."""
    from auditor.operations.daemon import Daemon
    from auditor.probes import load_suites

    config = load_config(config_path)
    logs.configure(
        level=os.environ.get("AUDITOR_LOG_LEVEL", "info"),
        json_lines=True,
        redactor=Redactor.from_config(config),
    )
    _, node = read_yaml(config_path, ConfigError)
    if not config.schedule:
        raise ConfigError(
            str(config_path), "empty: the daemon has nothing to run", field="schedule"
        )
    probes_dir = probes_dir_of(config_path, config)
    known = load_suites(probes_dir)
    for i, entry in enumerate(config.schedule):
        if entry.suite not in known:
            raise ConfigError(
                str(config_path),
                f"unknown suite {entry.suite!r} (known: {', '.join(sorted(known)) or 'none'})",
                field=f"schedule[{i}].suite",
                line=line_of(node, ("schedule", i, "suite")),
            )
    if database:
        config = config.model_copy(update={"database": database})
    token = web_token(config, config_path)  # off loopback, refuses to start without one
    store = open_store(config.database)  # refuses an outdated schema with one clear line
    raise typer.Exit(asyncio.run(Daemon(config, store, probes_dir, web_token=token).run()))


IncidentId = Annotated[int, typer.Argument(help="The incident's id (`auditor incidents list`).")]


@incidents_app.command("list")
def incidents_list(
    config_path: ConfigOpt = DEFAULT_CONFIG,
    database: DatabaseOpt = None,
    state: Annotated[str | None, typer.Option(help="open or resolved (default: both).")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 50,
) -> None:
    """Incidents, newest first (tab-separated)."""
    if state not in (None, "open", "resolved"):
        raise UsageError(f"--state: expected open or resolved, got {state!r}")
    store = open_store(database_url(config_path, database))
    print_line(
        "id\tstate\tseverity\tmodel\tprovider\topened_at\tacknowledged\tmuted_until\tsummary"
    )
    for row in incidents.list_incidents(store, state, limit):
        muted = f"{row.muted_until:%Y-%m-%dT%H:%M:%SZ}" if row.muted_until else "-"
        print_line(
            f"{row.id}\t{row.state}\t{row.severity}\t{row.model}\t{row.provider}\t"
            f"{row.opened_at:%Y-%m-%dT%H:%M:%SZ}\t{row.acknowledged_by or '-'}\t{muted}\t"
            f"{row.summary}"
        )


@incidents_app.command("ack")
def incidents_ack(
    incident_id: IncidentId,
    config_path: ConfigOpt = DEFAULT_CONFIG,
    database: DatabaseOpt = None,
    by: Annotated[str | None, typer.Option(help="Who (default: the login name).")] = None,
) -> None:
    """Acknowledge an incident: someone is on it."""
    store = open_store(database_url(config_path, database))
    if not incidents.acknowledge(store, incident_id, by or getpass.getuser()):
        raise UsageError(f"no incident {incident_id}")
    out.print(f"incident {incident_id} acknowledged")


@incidents_app.command("mute")
def incidents_mute(
    incident_id: IncidentId,
    config_path: ConfigOpt = DEFAULT_CONFIG,
    database: DatabaseOpt = None,
    for_: Annotated[
        str, typer.Option("--for", help="How long: 30m, 12h, 7d. `0` unmutes.")
    ] = "24h",
) -> None:
    """No alerts for an incident (not even its resolution) for a while."""
    try:
        duration = parse_duration(for_)
    except ValueError as exc:
        raise UsageError(f"--for: {exc}") from None
    until = utcnow() + duration if duration > timedelta(0) else None
    store = open_store(database_url(config_path, database))
    if not incidents.mute(store, incident_id, until):
        raise UsageError(f"no incident {incident_id}")
    out.print(
        f"incident {incident_id} "
        + (f"muted until {until:%Y-%m-%d %H:%M} UTC" if until else "unmuted")
    )
