"""Probe suites, the config file, the database schema, the version."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from auditor.cli.common import (
    ConfigOpt,
    DatabaseOpt,
    config_app,
    database_url,
    db_app,
    open_store,
    out,
    print_line,
    probes_app,
    probes_dir_of,
    web_token,
)
from auditor.config import DEFAULT_CONFIG, load_config, require_secrets
from auditor.errors import ConfigError, UsageError
from auditor.storage.db import current_revision, head_revision, make_engine, upgrade
from auditor.storage.repository import Store
from auditor.yamlfile import line_of, read_yaml


@probes_app.command("list")
def probes_list(
    config_path: ConfigOpt = DEFAULT_CONFIG,
    suite: Annotated[str | None, typer.Option(help="List the cases of this suite.")] = None,
    probes_dir: Annotated[Path | None, typer.Option(help="Probe directory.")] = None,
) -> None:
    """List the probe suites (or one suite's cases)."""
    from auditor.probes import PerModelCase, load_suite, load_suites

    directory = probes_dir or _default_probes_dir(config_path)
    if suite:
        for case in load_suite(suite, directory).written():
            if isinstance(case, PerModelCase):
                t = case.template
                line = f"{case.id}.*\tsamples={t.get('samples', 1)}"
                line += f"\tsignals={','.join(t.get('signals', []))}\tper model: {case.generator}"
                line += "".join(f", {p} from profile.{f}" for p, f in case.from_profile.items())
            else:
                line = f"{case.id}\tsamples={case.samples}\tsignals={','.join(case.signals)}"
            print_line(line)
        return
    for s in load_suites(directory).values():
        n = sum(c.samples for c in s.cases)
        cases = f"{len(s.cases)} cases" + (
            f" + {len(s.per_model)} per model" if s.per_model else ""
        )
        requests = f"{n} requests/provider" + (" + per model" if s.per_model else "")
        line = f"{s.name}\t{cases}\t{requests}\t{s.hash[:12]}"
        print_line(f"{line}\t{s.description or ''}")


def _default_probes_dir(config_path: Path) -> Path | None:
    if config_path.exists():
        return probes_dir_of(config_path, load_config(config_path))
    return Path("probes") if Path("probes").is_dir() else None


@probes_app.command("validate")
def probes_validate(
    path: Annotated[Path | None, typer.Argument(help="A suite file or a directory.")] = None,
    config_path: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Check probe files; prints one line per problem-free suite, or the first error."""
    from auditor.probes import validate_path
    from auditor.probes.suite import PACKAGED_SUITES

    suites = validate_path(path or _default_probes_dir(config_path) or PACKAGED_SUITES)
    for s in suites:
        more = f" and {len(s.per_model)} expanded per model" if s.per_model else ""
        out.print(f"ok {s.name}: {len(s.cases)} cases{more}, hash {s.hash[:12]}", highlight=False)


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON Schema of providers.yaml."""
    from auditor.config import config_json_schema

    sys.stdout.write(json.dumps(config_json_schema(), indent=2) + "\n")


@config_app.command("validate")
def config_validate(config_path: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Check providers.yaml, its key variables and its suites."""
    from auditor.probes import load_suites
    from auditor.rounds.run import select

    config = load_config(config_path)
    require_secrets(config, config_path)
    web_token(config, config_path)  # the daemon's server, off loopback, needs its token
    suites = load_suites(probes_dir_of(config_path, config))
    for i, name in enumerate(config.suites):
        if name not in suites:
            _, node = read_yaml(config_path, ConfigError)
            raise ConfigError(
                str(config_path),
                f"unknown suite {name!r}",
                field=f"suites[{i}]",
                line=line_of(node, ("suites", i)),
            )
    # Each model's cases of the suites it runs: a length its profile gives may not fit.
    for name in dict.fromkeys([*config.suites, *(e.suite for e in config.schedule)]):
        if name in suites:
            select(config, suites[name], None, None)
    n = sum(len(m.providers) for m in config.models)
    out.print(f"ok {config_path}: {len(config.models)} model(s), {n} provider(s)", highlight=False)


@db_app.command("upgrade")
def db_upgrade(config_path: ConfigOpt = DEFAULT_CONFIG, database: DatabaseOpt = None) -> None:
    """Create or migrate the database schema to this version."""
    engine = make_engine(database_url(config_path, database))
    before = current_revision(engine)
    upgrade(engine)
    out.print(f"database schema: {before or 'empty'} -> {head_revision()}", highlight=False)


@db_app.command("status")
def db_status(config_path: ConfigOpt = DEFAULT_CONFIG, database: DatabaseOpt = None) -> None:
    """Show the schema revision and the latest rounds."""
    engine = make_engine(database_url(config_path, database))
    current = current_revision(engine)
    out.print(
        f"schema {current or 'empty'} (this auditor needs {head_revision()})", highlight=False
    )
    if current == head_revision():
        for r in Store(engine).rounds(limit=10):
            print_line(f"{r.id}\t{r.suite}\t{r.status}\t{r.started_at:%Y-%m-%d %H:%M:%S}")


@db_app.command("prune")
def db_prune(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Retention period, e.g. 90d (s, m, h, d).")
    ],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count, change nothing.")] = False,
    config_path: ConfigOpt = DEFAULT_CONFIG,
    database: DatabaseOpt = None,
) -> None:
    """Drop raw payloads older than the period; keep findings, incidents and scores."""
    from auditor.operations.retention import prune
    from auditor.operations.settings import parse_duration

    try:
        period = parse_duration(older_than)
    except ValueError as exc:
        raise UsageError(f"--older-than: {exc}") from None
    if period.total_seconds() <= 0:
        raise UsageError("--older-than: must be a positive duration")
    store = open_store(database_url(config_path, database))
    for line in prune(store, period, dry_run=dry_run).lines():
        print_line(line)
