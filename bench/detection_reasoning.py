"""Detection of the reasoning flavour's faults on fleets drawn at random (`bench/detection.py
--flavour reasoning`).

Each start (a seed) draws, from `RANGES`, a fleet of the reasoning flavour (`auditor demo
--flavour reasoning`): the packaged model served as the emulated reasoning model by
`THINKING_HONEST` honest members and one `reasoning_leak` and one `effort_ignored` member, and
served plainly by `PLAIN_HONEST` honest members and one `drop_response_format`,
`ignore_seed`, `stream_tools_differ` and `router_fallback` member. Every member has its own
numeric noise; which reasoning field a reasoning member answers in, and whether an honest
plain member is a router, are drawn too. Members are named neutrally in a shuffled order and
none is trusted; the config is the one the flavour writes (`reasoning_providers_yaml`: the
model's reasoning profile, every router pinned to one upstream), so the detector is told
nothing the planted parameters hold.

Each start is two live rounds in one SQLite database under `--work`, as the flavour runs them:
the thinking model on `demo-reasoning`, the plain model on `demo-params`. Its outcome (each
member's verdict and diagnoses beside what was planted) is kept in `STARTS`, the start itself
in `bench/recorded/reasoning-<seed>.*`, and `judge` re-judges every recorded start with
today's detector and writes `bench/results/detection_reasoning.json`, in the shape of
`detection.json` (per fault: detection and correct-diagnosis rates; honest members pooled,
with the one-sided 95% Clopper-Pearson bound of their false-alarm rate).
"""

from __future__ import annotations

import json
import math
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from auditor_fleet import FleetSpec, fleet_down, fleet_up
from auditor_fleet.demo import REASONING_ROUNDS, THINKING_MODEL, reasoning_providers_yaml
from detection import (
    ROOT,
    Outcome,
    archive,
    detector_version,
    fleet_of,
    keep_outcomes,
    kept_blocks,
    kept_outcomes,
    machine,
    print_blocks,
    restore,
)
from detection import start_outcomes as standard_outcomes

from auditor.comparisons import DEFAULT_NOISE_TOLERANCE
from auditor.config import AuditorConfig
from auditor.judging.findings import build_findings
from auditor.judging.verdict import ALPHA
from auditor.probes import load_suite
from auditor.rounds.run import run_round_async, select
from auditor.storage.db import make_engine, upgrade
from auditor.storage.repository import Store

KIND = "reasoning"
STARTS = ROOT / "bench" / "results" / "detection_reasoning_starts.jsonl"
RESULTS = ROOT / "bench" / "results" / "detection_reasoning.json"
BASE_PORT = 8701
THINKING_HONEST = 3
PLAIN_HONEST = 3
PROBES = ROOT / "probes"

#: Where every fleet parameter is drawn from (log-uniform for noise, uniform otherwise).
RANGES: dict[str, Any] = {
    "noise": (0.01, 0.12),  # logit std of every member, honest or not
    "reasoning": ["reasoning", "reasoning_content"],  # the field a reasoning member answers in
    "router": [False, True],  # whether an honest plain member answers as a router
    "reasoning_leak.fraction": (0.25, 1.0),
    "stream_tools_differ.fraction": (0.5, 1.0),
    "router_fallback.fraction": (0.15, 0.75),
}
THINKING_FAULTS = ["reasoning_leak", "effort_ignored"]
PLAIN_FAULTS = ["drop_response_format", "ignore_seed", "stream_tools_differ", "router_fallback"]


def draw_fleet(
    seed: int, base_port: int = BASE_PORT
) -> tuple[FleetSpec, dict[str, dict[str, Any]]]:
    """The reasoning fleet of start `seed` and, per member name, what was planted."""
    rng = random.Random(f"reasoning/{seed}")

    def fraction(fault: str) -> float:
        a, b = RANGES[f"{fault}.fraction"]
        return round(rng.uniform(a, b), 3)

    drawn: list[tuple[str, dict[str, Any]]] = []
    for fault in ["honest"] * THINKING_HONEST + THINKING_FAULTS:
        fields: dict[str, Any] = {"models": [THINKING_MODEL]}
        fields["reasoning"] = rng.choice(RANGES["reasoning"])
        if fault == "reasoning_leak":
            fields["strength"] = fraction(fault)
        drawn.append((fault, fields))
    for fault in ["honest"] * PLAIN_HONEST + PLAIN_FAULTS:
        fields = {}
        if fault == "honest":
            fields["router"] = rng.choice(RANGES["router"])
        elif f"{fault}.fraction" in RANGES:
            fields["strength"] = fraction(fault)
        drawn.append((fault, fields))
    return fleet_of(drawn, rng, seed, base_port)


def config(spec: FleetSpec, database: str) -> AuditorConfig:
    """The config the flavour writes for this fleet (`reasoning_providers_yaml`)."""
    data = yaml.safe_load(reasoning_providers_yaml(spec, database))
    data["probes_dir"] = str(PROBES)
    return AuditorConfig.model_validate(data)


async def record_start(seed: int, work: Path, base_port: int = BASE_PORT) -> None:
    """Record start `seed` (both rounds) unless it is recorded already."""
    target = work / f"{KIND}-{seed}.db"
    if restore(seed, work, KIND):
        print(f"reasoning start {seed}: recorded already", flush=True)
        return
    spec, planted = draw_fleet(seed, base_port)
    scratch = Path(tempfile.mkdtemp(prefix=f"{KIND}-{seed}-", dir=work))
    db = scratch / "start.db"
    database = f"sqlite:///{db}"
    engine = make_engine(database)
    upgrade(engine)
    store = Store(engine)
    cfg = config(spec, database)
    t0 = time.monotonic()
    fleet_up(spec, scratch / "fleet", wait_s=300)
    seconds: dict[str, float] = {}
    try:
        for model, suite in REASONING_ROUNDS:
            started = time.monotonic()
            selection = select(cfg, load_suite(suite, PROBES), model, None)
            result = await run_round_async(cfg, store, selection)
            seconds[suite] = round(time.monotonic() - started, 1)
            if result.outcome.status == "interrupted":
                break
    finally:
        fleet_down(scratch / "fleet")
    stopped = len(seconds) < len(REASONING_ROUNDS) or any(
        r.status != "complete" for r in store.rounds(limit=10)
    )
    engine.dispose()
    if stopped:
        shutil.rmtree(scratch, ignore_errors=True)
        raise SystemExit(f"reasoning start {seed}: interrupted, nothing kept")
    shutil.move(db, target)
    meta = {"seed": seed, "mode": "live", "planted": planted, "seconds": seconds}
    meta["ranges"] = RANGES
    (work / f"{KIND}-{seed}.json").write_text(json.dumps(meta, indent=1))
    shutil.rmtree(scratch, ignore_errors=True)
    archive(seed, work, KIND)
    print(f"reasoning start {seed}: {time.monotonic() - t0:.0f} s {seconds}", flush=True)
    keep_outcomes(start_outcomes(seed, meta, judge_start(target)), STARTS)


def judge_start(db: Path) -> dict[str, Outcome]:
    """Each provider's outcome, recomputed by today's detector from both stored rounds."""
    engine = make_engine(f"sqlite:///{db}")
    upgrade(engine)
    store = Store(engine)
    outcomes: dict[str, Outcome] = {}
    for row in store.rounds(limit=10):
        findings, _, _ = build_findings(store, row.id)
        totals = {t["provider"]: t for t in store.provider_totals(row.id)}
        for f in findings:
            total = totals[f.provider]
            outcomes[f.provider] = Outcome(f, 1, total["requests"], total["tokens"])
    engine.dispose()
    return outcomes


def start_outcomes(seed: int, meta: dict[str, Any], outcomes: dict[str, Outcome]) -> dict[str, Any]:
    """`detection.start_outcomes`, with each member's first two diagnosis summaries (the
    parameter or upstream an `other` diagnosis names)."""
    row = standard_outcomes(seed, meta, outcomes)
    for name, member in row["members"].items():
        member["summaries"] = [d.summary for d in outcomes[name].finding.diagnoses[:2]]
    return row


def judge(work: Path, tuning: list[int], reporting: list[int]) -> None:
    """Re-judge every recorded start with today's detector and summarise, as `detection.judge`
    does for the standard flavour; a start not recorded, or judged by another detector and
    no longer recorded here, is left out with a printed line."""
    version = detector_version()
    result: dict[str, Any] = {
        "benchmark": "detection_reasoning",
        "machine": machine(),
        "detector": version,
        "noise_tolerance": DEFAULT_NOISE_TOLERANCE,
        "alpha": ALPHA,
        "ranges": RANGES,
        "members": {
            "thinking": {"honest": THINKING_HONEST, "faults": THINKING_FAULTS},
            "plain": {"honest": PLAIN_HONEST, "faults": PLAIN_FAULTS},
        },
        "trusted": "none",
        "seeds": {"tuning": tuning, "reporting": reporting},
    }
    for seed in tuning + reporting:
        if restore(seed, work, KIND):
            meta = json.loads((work / f"{KIND}-{seed}.json").read_text())
            row = start_outcomes(seed, meta, judge_start(work / f"{KIND}-{seed}.db"))
            keep_outcomes(row, STARTS)
    labelled = {"tuning": tuning, "reporting": reporting}
    blocks = kept_blocks(
        kept_outcomes(STARTS), labelled, version, DEFAULT_NOISE_TOLERANCE, "reasoning start"
    )
    for block in blocks.values():
        block["seconds_mean"] = seconds_mean(block["starts"], work)
    result |= blocks
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print_blocks(result, RESULTS)


def seconds_mean(seeds: list[int], work: Path) -> float | None:
    """The mean wall time of a start's two rounds (from each start's meta)."""
    times = []
    for seed in seeds:
        path = work / f"{KIND}-{seed}.json"
        if path.exists():
            times.append(sum(json.loads(path.read_text()).get("seconds", {}).values()))
    return round(math.fsum(times) / len(times), 1) if times else None
