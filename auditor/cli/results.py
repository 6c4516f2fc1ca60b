"""Rounds and their results: run, report, compare, calibrate, export."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from auditor.cli.common import (
    ConfigOpt,
    DatabaseOpt,
    ExportFormat,
    FailOn,
    ReportFormat,
    app,
    database_url,
    err,
    open_config,
    open_store,
    out,
    probes_dir_of,
)
from auditor.config import DEFAULT_CONFIG, AuditorConfig, require_secrets
from auditor.errors import ConfigError, UsageError
from auditor.records import Finding
from auditor.storage.repository import Store
from auditor.storage.tables import RoundRow
from auditor.yamlfile import line_of, read_yaml

if TYPE_CHECKING:
    from auditor.report.selection import Filters, Selection


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
    config = open_config(config_path)
    require_secrets(config, config_path, model)
    caps = {"max_requests": max_requests, "max_tokens": max_tokens, "max_cost": max_cost}
    overrides = {k: v for k, v in caps.items() if v is not None}
    if overrides:
        config = config.model_copy(update={"budget": config.budget.model_copy(update=overrides)})
    findings = run_rounds(
        config, config_path, suite, model, provider, progress, not no_reference, database
    )
    if fail_on and _fails(findings, fail_on):
        raise typer.Exit(1)


def run_rounds(
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
    from auditor.cli.progress import ProgressBars
    from auditor.probes import load_suites
    from auditor.report.render import build_report, print_table
    from auditor.rounds.run import run_round_async, select

    suites = load_suites(probes_dir_of(config_path, config))
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
    # Every round's cases first: a bad length from a model's profile stops before any round.
    selections = [select(config, suites[name], model, provider) for name in names]
    store = open_store(database or config.database)
    findings: list[Finding] = []
    for selection in selections:
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
    from auditor.report.render import build_report, print_table, to_json, to_markdown

    if last and round_id:
        raise UsageError("--round and --last are exclusive")
    store = open_store(database_url(config_path, database))
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
    from auditor.judging.findings import build_findings

    store = open_store(database_url(config_path, database))
    row = _pick_round(store, round_id)
    findings, detector, params = build_findings(store, row.id)
    store.save_findings(row.id, findings, detector, params)
    report(config_path, row.id, False, fmt, database)


def _export_evidence(
    store: Store, round_id: str | None, provider: str | None, output: Path | None
) -> None:
    from auditor.report.evidence_bundle import evidence_bundle

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
    from auditor.judging.calibration import calibrate_round

    store = open_store(database_url(config_path, database))
    wanted: list[str | None] = [*round_ids] if round_ids else [None]
    rows = [_pick_round(store, r) for r in wanted]
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
    round_ids: Annotated[
        list[str] | None,
        typer.Option("--round", metavar="<id>", help="Only these rounds (repeat, or a list)."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            metavar="<day>", help="Only rounds started on this UTC day or later (YYYY-MM-DD)."
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            metavar="<day>", help="Only rounds started on this UTC day or before (YYYY-MM-DD)."
        ),
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option(metavar="<name>", help="Only these models (repeat, or a comma list)."),
    ] = None,
    provider: Annotated[
        list[str] | None,
        typer.Option(
            metavar="<name>",
            help="Only these providers (`reference`: the reference engines); with --evidence: "
            "that provider's finding, whatever its verdict.",
        ),
    ] = None,
    suite: Annotated[
        list[str] | None,
        typer.Option(metavar="<name>", help="Only rounds of these suites (repeat, or a list)."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="File (default stdout); for --format parquet a directory."
        ),
    ] = None,
    evidence: Annotated[
        bool,
        typer.Option(
            "--evidence",
            help="Instead: one JSON bundle of the round's deviant findings, each probe's "
            "reference and provider answers side by side, to send to a provider.",
        ),
    ] = False,
    database: DatabaseOpt = None,
) -> None:
    """Export samples (requests, responses, timings, usage) for analysis; as Parquet, with
    their scores, findings, tests and diagnoses (docs/research.md)."""
    from auditor.report.selection import Filters, select_rounds

    filters = Filters.parse(round_ids, since, until, model, provider, suite)
    if evidence:
        for option, given in (
            ("--since", since),
            ("--until", until),
            ("--model", filters.models),
            ("--suite", filters.suites),
        ):
            if given:
                raise UsageError(f"{option}: not with --evidence (it takes one --round)")
        for option, values in (("--round", filters.rounds), ("--provider", filters.providers)):
            if len(values) > 1:
                raise UsageError(f"{option}: --evidence takes one --round and one --provider")
    elif fmt is ExportFormat.parquet and output is None:
        raise UsageError("--output: --format parquet writes a directory: pass -o DIR")
    store = open_store(database_url(config_path, database))
    if evidence:
        one = filters.providers[0] if filters.providers else None
        _export_evidence(store, next(iter(filters.rounds), None), one, output)
        return
    if fmt is ExportFormat.parquet:
        assert output is not None
        _export_parquet(store, filters, output)
        return
    from auditor.report.export import sample_records, write_csv, write_jsonl

    if filters.empty:
        records = sample_records(store, None)
    elif filters == Filters(rounds=filters.rounds) and len(filters.rounds) == 1:
        _pick_round(store, filters.rounds[0])
        records = sample_records(store, filters.rounds[0])  # in id order, as before
    else:
        records = _selected_records(store, select_rounds(store, filters))  # checked first
    writer = write_jsonl if fmt is ExportFormat.jsonl else write_csv
    if output is None:
        writer(records, sys.stdout)
        return
    with output.open("w", encoding="utf-8", newline="") as f:
        n = writer(records, f)
    err.print(f"wrote {n} samples to {output}")


def _selected_records(store: Store, selection: Selection) -> Iterator[dict[str, Any]]:
    """The JSONL/CSV records of the selected rounds and endpoints, round by round."""
    from auditor.report.export import sample_records

    chosen = {(e.model, e.name) for e in selection.endpoints.values()}
    for r in selection.rounds:
        for record in sample_records(store, r.id):
            if (record["model"], record["provider"]) in chosen:
                yield record


def _export_parquet(store: Store, filters: Filters, output: Path) -> None:
    from auditor.report.parquet import export_parquet

    summary = export_parquet(store, filters, output)
    rows = summary.rows
    err.print(
        f"wrote {rows['samples']} samples, {rows['findings']} findings ({rows['tests']} tests, "
        f"{rows['diagnoses']} diagnoses) of {len(summary.days)} day(s) to {output} "
        f"({summary.files} files, {summary.bytes / 2**20:.1f} MiB; {summary.replaced} replaced, "
        f"{summary.removed} removed)",
        highlight=False,
        soft_wrap=True,
    )
