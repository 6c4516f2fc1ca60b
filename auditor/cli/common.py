"""What every `auditor` command shares: the Typer apps, options, consoles and helpers."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from auditor import logs
from auditor.config import DEFAULT_CONFIG, AuditorConfig, load_config
from auditor.errors import ConfigError, UsageError
from auditor.secrets import Redactor
from auditor.storage.db import ensure_schema, make_engine
from auditor.storage.repository import Store
from auditor.yamlfile import line_of, read_yaml

app = typer.Typer(
    name="auditor",
    help="Audit whether LLM hosting providers serve the model they claim.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
)
probes_app = typer.Typer(help="Probe suites.", no_args_is_help=True)
config_app = typer.Typer(help="The providers.yaml config.", no_args_is_help=True)
db_app = typer.Typer(help="The results database.", no_args_is_help=True)
app.add_typer(probes_app, name="probes")
app.add_typer(config_app, name="config")
fleet_app = typer.Typer(help="The local demo fleet of providers (127.0.0.1).", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(fleet_app, name="fleet")
alerts_app = typer.Typer(help="Webhook alerts and their outbox.", no_args_is_help=True)
app.add_typer(alerts_app, name="alerts")
incidents_app = typer.Typer(help="Incidents the daemon opened.", no_args_is_help=True)
app.add_typer(incidents_app, name="incidents")

FLEET_STATE = Path(".auditor/fleet")
StateDirOpt = Annotated[Path, typer.Option("--state-dir", help="Where the fleet's pid and log go.")]

# Piped output is not cut to 80 columns: a report table read from a file stays whole.
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True)

ConfigOpt = Annotated[
    Path, typer.Option("--config", "-c", envvar="AUDITOR_CONFIG", help="providers.yaml to use.")
]
DatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database", envvar="AUDITOR_DATABASE", help="Database URL (overrides the config)."
    ),
]


class FailOn(StrEnum):
    deviant = "deviant"
    warning = "warning"
    critical = "critical"


class ReportFormat(StrEnum):
    table = "table"
    json = "json"
    markdown = "markdown"


class ExportFormat(StrEnum):
    jsonl = "jsonl"
    csv = "csv"
    parquet = "parquet"  # a directory of Hive-style partitions (auditor/report/parquet/)


def open_config(path: Path) -> AuditorConfig:
    config = load_config(path)
    logs.configure(redactor=Redactor.from_config(config))
    return config


def database_url(config_path: Path, database: str | None) -> str:
    if database:
        return database
    if not config_path.exists() and config_path == DEFAULT_CONFIG:
        raise UsageError(f"{config_path}: file not found (pass -c FILE or --database URL)")
    return load_config(config_path).database


def web_token(config: AuditorConfig, config_path: Path) -> str | None:
    """The web server's bearer token (see `access_token`); a non-loopback `server.host`
    without one is an error in the config, named with its line."""
    from auditor.web.auth import access_token

    try:
        return access_token(config.server)
    except UsageError as exc:
        _, node = read_yaml(config_path, ConfigError)
        raise ConfigError(
            str(config_path), str(exc), field="server.host", line=line_of(node, ("server", "host"))
        ) from None


def open_store(url: str) -> Store:
    engine = make_engine(url)
    ensure_schema(engine)
    store = Store(engine)
    store.reap_dead_rounds()
    return store


def probes_dir_of(config_path: Path, config: AuditorConfig) -> Path | None:
    """The config's `probes_dir` (relative to the config file). Left unset, `probes/` beside
    the config if there is one, else None: the suites shipped with the package."""
    probes = Path(config.probes_dir)
    probes = probes if probes.is_absolute() else config_path.parent / probes
    if "probes_dir" not in config.model_fields_set and not probes.is_dir():
        return None
    return probes


def print_line(text: str) -> None:
    """Write a plain line (tab-separated listings stay machine-readable; rich expands tabs)."""
    sys.stdout.write(text + "\n")


def fail(message: str, code: int) -> None:
    sys.stderr.write(f"auditor: error: {' '.join(message.split())}\n")
    sys.exit(code)
