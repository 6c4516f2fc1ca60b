"""The `auditor` command: verbs only. Each parses, calls one module, prints."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from sqlalchemy.exc import SQLAlchemyError

try:  # typer >= 0.25 carries its own copy of click
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - older typer depends on click itself
    from click import exceptions as click_errors  # type: ignore[no-redef]

from auditor import __version__, logs
from auditor.config import DEFAULT_CONFIG, AuditorConfig, load_config, require_secrets
from auditor.errors import AuditorError, ConfigError, UsageError
from auditor.records import Finding
from auditor.secrets import Redactor
from auditor.storage.db import current_revision, ensure_schema, head_revision, make_engine, upgrade
from auditor.storage.repository import Store
from auditor.storage.tables import RoundRow
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


def _config(path: Path) -> AuditorConfig:
    config = load_config(path)
    logs.configure(redactor=Redactor.from_config(config))
    return config


def _database_url(config_path: Path, database: str | None) -> str:
    if database:
        return database
    if not config_path.exists() and config_path == DEFAULT_CONFIG:
        raise UsageError(f"{config_path}: file not found (pass -c FILE or --database URL)")
    return load_config(config_path).database


def _store(url: str) -> Store:
    engine = make_engine(url)
    ensure_schema(engine)
    store = Store(engine)
    store.reap_dead_rounds()
    return store


def _probes_dir(config_path: Path, config: AuditorConfig) -> Path:
    probes = Path(config.probes_dir)
    return probes if probes.is_absolute() else config_path.parent / probes


@app.command()
def run(
    config_path: ConfigOpt = DEFAULT_CONFIG,
    suite: Annotated[
        str | None, typer.Option(help="Suite to run (default: the config's suites).")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    provider: Annotated[str | None, typer.Option(help="Only this provider.")] = None,
    fail_on: Annotated[
        FailOn | None, typer.Option(help="Exit 1 if a finding reaches this level.")
    ] = None,
    max_requests: Annotated[int | None, typer.Option(min=1, help="Round budget: requests.")] = None,
    max_tokens: Annotated[int | None, typer.Option(min=1, help="Round budget: tokens.")] = None,
    max_cost: Annotated[float | None, typer.Option(min=0.0, help="Round budget: cost.")] = None,
    no_reference: Annotated[
        bool, typer.Option("--no-reference", help="Skip the reference.")
    ] = False,
    database: DatabaseOpt = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Run one round: every probe to every provider (and the reference), stored as it arrives."""
    config = _config(config_path)
    require_secrets(config, config_path, model)
    caps = {"max_requests": max_requests, "max_tokens": max_tokens, "max_cost": max_cost}
    overrides = {k: v for k, v in caps.items() if v is not None}
    if overrides:
        config = config.model_copy(update={"budget": config.budget.model_copy(update=overrides)})
    findings = _run_rounds(
        config, config_path, suite, model, provider, progress, not no_reference, database
    )
    if fail_on and _fails(findings, fail_on):
        raise typer.Exit(1)


def _run_rounds(
    config: AuditorConfig,
    config_path: Path,
    suite: str | None,
    model: str | None,
    provider: str | None,
    progress: bool,
    with_reference: bool,
    database: str | None = None,
) -> list[Finding]:
    """Run one round per selected suite, print each report; return all findings."""
    from auditor.probes import load_suites
    from auditor.progress import ProgressBars
    from auditor.report import build_report, print_table
    from auditor.rounds import run_round_async, select

    suites = load_suites(_probes_dir(config_path, config))
    names = [suite] if suite else config.suites
    for i, name in enumerate(names):
        if name not in suites:
            known = ", ".join(sorted(suites)) or "none"
            if suite:
                raise UsageError(f"--suite: unknown suite {name!r} (known: {known})")
            _, node = read_yaml(config_path, ConfigError)
            raise ConfigError(
                str(config_path),
                f"unknown suite {name!r} (known: {known})",
                field=f"suites[{i}]",
                line=line_of(node, ("suites", i)),
            )
    store = _store(database or config.database)
    findings: list[Finding] = []
    for name in names:
        selection = select(config, suites[name], model, provider)
        with ProgressBars(err, enabled=progress) as bars:
            result = asyncio.run(run_round_async(config, store, selection, bars, with_reference))
        if result.reference_note:
            err.print(f"note: {result.reference_note}", highlight=False)
        row = store.get_round(result.round_id)
        assert row is not None
        report = build_report(store, row)
        print_table(report, out)
        findings += report.findings
        if result.outcome.status == "interrupted":
            raise typer.Exit(130)
    return findings


def _fails(findings: list[Finding], fail_on: FailOn) -> bool:
    if fail_on is FailOn.deviant:
        return any(f.verdict == "deviant" for f in findings)
    levels = {"info": 0, "warning": 1, "critical": 2}
    threshold = levels[fail_on.value]
    return any(levels[f.severity] >= threshold for f in findings)


def _pick_round(store: Store, round_id: str | None) -> RoundRow:
    row = store.get_round(round_id) if round_id else store.last_round()
    if row is None:
        raise UsageError(
            f"--round: no round {round_id!r} in the database" if round_id else "no rounds yet"
        )
    return row


@app.command()
def report(
    config_path: ConfigOpt = DEFAULT_CONFIG,
    round_id: Annotated[
        str | None, typer.Option("--round", help="Round id (default: last).")
    ] = None,
    last: Annotated[bool, typer.Option("--last", help="The most recent round (default).")] = False,
    fmt: Annotated[ReportFormat, typer.Option("--format")] = ReportFormat.table,
    database: DatabaseOpt = None,
) -> None:
    """Print the findings of a round."""
    from auditor.report import build_report, print_table, to_json, to_markdown

    if last and round_id:
        raise UsageError("--round and --last are exclusive")
    store = _store(_database_url(config_path, database))
    rep = build_report(store, _pick_round(store, round_id))
    if fmt is ReportFormat.json:
        sys.stdout.write(to_json(rep) + "\n")
    elif fmt is ReportFormat.markdown:
        sys.stdout.write(to_markdown(rep))
    else:
        print_table(rep, out)


@app.command()
def compare(
    config_path: ConfigOpt = DEFAULT_CONFIG,
    round_id: Annotated[
        str | None, typer.Option("--round", help="Round id (default: last).")
    ] = None,
    fmt: Annotated[ReportFormat, typer.Option("--format")] = ReportFormat.table,
    database: DatabaseOpt = None,
) -> None:
    """Recompute a round's findings from the database alone."""
    from auditor.compare import build_findings

    store = _store(_database_url(config_path, database))
    row = _pick_round(store, round_id)
    findings, detector, params = build_findings(store, row.id)
    store.save_findings(row.id, findings, detector, params)
    report(config_path, row.id, False, fmt, database)


def _export_evidence(
    store: Store, round_id: str | None, provider: str | None, output: Path | None
) -> None:
    from auditor.evidence import evidence_bundle

    row = _pick_round(store, round_id)
    bundle = evidence_bundle(store, row, provider, all_verdicts=provider is not None)
    if provider is not None and not bundle["findings"]:
        raise UsageError(f"--provider: no finding for {provider!r} in round {row.id}")
    text = json.dumps(bundle, ensure_ascii=False, indent=1)
    if output is None:
        sys.stdout.write(text + "\n")
        return
    output.write_text(text + "\n", encoding="utf-8")
    err.print(f"wrote evidence for {len(bundle['findings'])} finding(s) to {output}")


@app.command()
def calibrate(
    config_path: ConfigOpt = DEFAULT_CONFIG,
    round_ids: Annotated[
        list[str] | None,
        typer.Option("--round", help="Round id, repeatable: rounds of one suite (default: last)."),
    ] = None,
    honest: Annotated[
        str | None,
        typer.Option(help="Providers to treat as honest besides trusted ones (a,b,...)."),
    ] = None,
    rounds: Annotated[int, typer.Option(min=20, help="Simulated honest rounds.")] = 200,
    seed: int = 0,
    database: DatabaseOpt = None,
) -> None:
    """Noise band and false-alarm rate from a round's honest providers, stored for reports."""
    from auditor.compare import calibrate_round

    store = _store(_database_url(config_path, database))
    rows = [_pick_round(store, r) for r in (round_ids or [None])]
    if len({r.suite for r in rows}) > 1:
        raise UsageError("--round: calibrate on rounds of one suite")
    names = [n.strip() for n in (honest or "").split(",") if n.strip()]
    for c in calibrate_round(store, [r.id for r in rows], names, rounds, seed):
        out.print(
            f"{c.model}: honest providers {', '.join(c.honest_endpoints or [])}; "
            f"flagged in {c.flagged} of {c.rounds} simulated honest rounds "
            f"({c.rate:.1%}, 95% upper bound {c.upper_bound:.1%}) at alpha {c.alpha}; "
            f"{len(c.honest_ranges or {})} noise bands stored (calibration {c.id})",
            highlight=False,
        )


@app.command()
def export(
    config_path: ConfigOpt = DEFAULT_CONFIG,
    fmt: Annotated[ExportFormat, typer.Option("--format")] = ExportFormat.jsonl,
    round_id: Annotated[str | None, typer.Option("--round", help="Only this round.")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File (default stdout).")
    ] = None,
    evidence: Annotated[
        bool,
        typer.Option(
            "--evidence",
            help="Instead: one JSON bundle of the round's deviant findings, each probe's "
            "reference and provider answers side by side, to send to a provider.",
        ),
    ] = False,
    provider: Annotated[
        str | None, typer.Option(help="With --evidence: only this provider (any verdict).")
    ] = None,
    database: DatabaseOpt = None,
) -> None:
    """Export samples (requests, responses, timings, usage) for analysis."""
    from auditor.export import sample_records, write_csv, write_jsonl

    store = _store(_database_url(config_path, database))
    if evidence:
        _export_evidence(store, round_id, provider, output)
        return
    if round_id:
        _pick_round(store, round_id)
    writer = write_jsonl if fmt is ExportFormat.jsonl else write_csv
    if output is None:
        writer(sample_records(store, round_id), sys.stdout)
        return
    with output.open("w", encoding="utf-8", newline="") as f:
        n = writer(sample_records(store, round_id), f)
    err.print(f"wrote {n} samples to {output}")


@probes_app.command("list")
def probes_list(
    config_path: ConfigOpt = DEFAULT_CONFIG,
    suite: Annotated[str | None, typer.Option(help="List the cases of this suite.")] = None,
    probes_dir: Annotated[Path | None, typer.Option(help="Probe directory.")] = None,
) -> None:
    """List the probe suites (or one suite's cases)."""
    from auditor.probes import load_suite, load_suites

    directory = probes_dir or _default_probes_dir(config_path)
    if suite:
        s = load_suite(suite, directory)
        for case in s.cases:
            signals = ",".join(case.signals)
            _line(f"{case.id}\tsamples={case.samples}\tsignals={signals}")
        return
    for s in load_suites(directory).values():
        n = sum(c.samples for c in s.cases)
        line = f"{s.name}\t{len(s.cases)} cases\t{n} requests/provider\t{s.hash[:12]}"
        _line(f"{line}\t{s.description or ''}")


def _default_probes_dir(config_path: Path) -> Path:
    if config_path.exists():
        return _probes_dir(config_path, load_config(config_path))
    return Path("probes")


@probes_app.command("validate")
def probes_validate(
    path: Annotated[Path | None, typer.Argument(help="A suite file or a directory.")] = None,
    config_path: ConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Check probe files; prints one line per problem-free suite, or the first error."""
    from auditor.probes import validate_path

    suites = validate_path(path or _default_probes_dir(config_path))
    for s in suites:
        out.print(f"ok {s.name}: {len(s.cases)} cases, hash {s.hash[:12]}", highlight=False)


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON Schema of providers.yaml."""
    from auditor.config import config_json_schema

    sys.stdout.write(json.dumps(config_json_schema(), indent=2) + "\n")


@config_app.command("validate")
def config_validate(config_path: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Check providers.yaml, its key variables and its suites."""
    from auditor.probes import load_suites

    config = load_config(config_path)
    require_secrets(config, config_path)
    suites = load_suites(_probes_dir(config_path, config))
    for i, name in enumerate(config.suites):
        if name not in suites:
            _, node = read_yaml(config_path, ConfigError)
            raise ConfigError(
                str(config_path),
                f"unknown suite {name!r}",
                field=f"suites[{i}]",
                line=line_of(node, ("suites", i)),
            )
    n = sum(len(m.providers) for m in config.models)
    out.print(f"ok {config_path}: {len(config.models)} model(s), {n} provider(s)", highlight=False)


@db_app.command("upgrade")
def db_upgrade(config_path: ConfigOpt = DEFAULT_CONFIG, database: DatabaseOpt = None) -> None:
    """Create or migrate the database schema to this version."""
    engine = make_engine(_database_url(config_path, database))
    before = current_revision(engine)
    upgrade(engine)
    out.print(f"database schema: {before or 'empty'} -> {head_revision()}", highlight=False)


@db_app.command("status")
def db_status(config_path: ConfigOpt = DEFAULT_CONFIG, database: DatabaseOpt = None) -> None:
    """Show the schema revision and the latest rounds."""
    engine = make_engine(_database_url(config_path, database))
    current = current_revision(engine)
    out.print(
        f"schema {current or 'empty'} (this auditor needs {head_revision()})", highlight=False
    )
    if current == head_revision():
        for r in Store(engine).rounds(limit=10):
            _line(f"{r.id}\t{r.suite}\t{r.status}\t{r.started_at:%Y-%m-%d %H:%M:%S}")


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
    from auditor.fleet import default_fleet, echo_fleet, fleet_up, load_fleet_spec, pick_members
    from auditor.fleet.demo import build_weights

    if spec:
        fleet = load_fleet_spec(spec)
    else:
        fleet = echo_fleet(base_port) if echo else default_fleet(base_port)
    if faults:
        fleet = pick_members(fleet, [f for f in faults.split(",") if f.strip()])
    build_weights(fleet, lambda line: err.print(line, highlight=False))
    handle = fleet_up(fleet, state_dir, wait_s=120)
    for m in handle.members:
        _line(f"{m.name}\t{m.fault}\t{m.base_url}")
    out.print(f"fleet pid {handle.pid}; stop it with `auditor fleet down`", highlight=False)


@fleet_app.command("down")
def fleet_down_cmd(state_dir: StateDirOpt = FLEET_STATE) -> None:
    """Stop the fleet started by `auditor fleet up`."""
    from auditor.fleet import fleet_down

    out.print("fleet stopped" if fleet_down(state_dir) else "no fleet was running")


@fleet_app.command("status")
def fleet_status_cmd(state_dir: StateDirOpt = FLEET_STATE) -> None:
    """Show the fleet's members and whether they answer."""
    from auditor.fleet import fleet_status

    status = fleet_status(state_dir)
    if status is None:
        out.print("no fleet")
        raise typer.Exit(1)
    for m in status.members:
        state = "up" if m.healthy else "down"
        _line(f"{m.name}\t{m.fault}\t{m.base_url}\t{state}")


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
) -> None:
    """Start the local fleet, run one round of the demo suite against it and the reference,
    and print each provider's planted fault beside the auditor's verdict.

    Uses providers.yaml if it exists, else writes demo-providers.yaml for the fleet. The
    database stays for `auditor report`, `auditor export` and friends.
    """
    import time

    from auditor.fleet import (
        default_fleet,
        echo_fleet,
        fleet_down,
        fleet_status,
        fleet_up,
        pick_members,
    )
    from auditor.fleet.demo import (
        build_weights,
        planted,
        print_demo_table,
        provider_times,
        providers_yaml,
        spec_from_state,
    )

    fleet = echo_fleet(base_port) if echo else default_fleet(base_port)
    if faults:
        fleet = pick_members(fleet, [f for f in faults.split(",") if f.strip()])
    if config_path == DEFAULT_CONFIG and not config_path.exists():
        config_path = Path("demo-providers.yaml")
        config_path.write_text(providers_yaml(fleet), encoding="utf-8")
        err.print(f"wrote {config_path} for the demo fleet", highlight=False)
    config = _config(config_path)
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
    try:
        findings = _run_rounds(config, config_path, "demo", None, None, progress, True)
    finally:
        if started:
            fleet_down(state_dir)
    elapsed = time.monotonic() - t0
    store = _store(config.database)
    row = store.last_round()
    print_demo_table(
        findings,
        members,
        provider_times(store, row.id) if row else {},
        out,
        f"planted faults and findings (round {row.id if row else '?'}, {elapsed:.0f} s)",
    )
    out.print(
        f"results: {config.database} (try `auditor report`, `auditor export`)", highlight=False
    )


@app.command()
def version() -> None:
    """Print the auditor version."""
    out.print(__version__)


def main(argv: list[str] | None = None) -> None:
    """Entry point: every user error ends as one line on stderr and exit code 2."""
    logs.configure(level=os.environ.get("AUDITOR_LOG_LEVEL", "warning"))
    try:
        # Without standalone mode click returns a typer.Exit's code instead of exiting.
        code = app(args=argv, standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except AuditorError as exc:
        _fail(exc.one_line(), exc.exit_code)
    except click_errors.NoArgsIsHelpError:
        sys.exit(0)
    except click_errors.UsageError as exc:
        ctx = f"{exc.ctx.command_path}: " if exc.ctx else ""
        _fail(f"{ctx}{exc.format_message()}", 2)
    except click_errors.ClickException as exc:
        _fail(exc.format_message(), 2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        _fail("aborted", 130)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except SQLAlchemyError as exc:
        # The database failed mid-command: samples stored until then are kept.
        _fail(f"database: {type(exc).__name__}: {getattr(exc, 'orig', None) or exc}", 1)


def _line(text: str) -> None:
    """Write a plain line (tab-separated listings stay machine-readable; rich expands tabs)."""
    sys.stdout.write(text + "\n")


def _fail(message: str, code: int) -> None:
    sys.stderr.write(f"auditor: error: {' '.join(message.split())}\n")
    sys.exit(code)
