"""Detection on fleets the detector never saw: every fleet parameter drawn at random per start.

Each fleet start (a seed) draws, from the documented `RANGES`, a fleet of the packaged model:
three or more honest members and one member per fault, every one with its own numeric noise
(the honest noise level is never told to the detector, and no member is marked trusted),
named neutrally in a shuffled order. Per start, in one SQLite database under `--work`:

- the `demo` suite under the sequential budget of the example providers.yaml (`LOOKS` looks,
  one extra sample a look for the providers in doubt), run live: what `auditor run` does;
- or, with `--replay` (the tuning starts), every case asked for as many samples as the looks
  can ask, so that judging replays the sequential policy with any later detector exactly: a
  provider in doubt after look k gets look k + 1's samples, one settled gets no more;
- optionally (`--peer`), the peer's suite: `PEER_PROMPTS` at temperature 1, `PEER_SAMPLES`
  each, for `bench/peer_met.py` (Model Equality Testing, the same fleet and reference).

The fleet's parameters are written beside each database (`start-<seed>.json`), never into it.
`judge` replays the sequential looks with today's detector and writes
`bench/results/detection.json`: per fault, detection rate (verdict `deviant`), the rate at
which its expected diagnosis comes first, requests and tokens spent; for honest members,
pooled and per noise tercile, the false-alarm rate with its one-sided 95% Clopper-Pearson
upper bound. Thresholds are chosen on the tuning seeds and the figures reported on the
reporting seeds, both named in the results.

    .venv/bin/python bench/detection.py record --seeds 0-4 --replay    # tuning starts
    .venv/bin/python bench/detection.py record --seeds 100-119         # reporting starts
    .venv/bin/python bench/detection.py record --seeds 100-104 --peer  # adds the peer round
    .venv/bin/python bench/detection.py record --seeds 110-119 --base-port 8601  # a 2nd recorder
    .venv/bin/python bench/detection.py judge --tuning 0-4 --reporting 100-119
    .venv/bin/python bench/detection.py record --flavour reasoning --seeds 0-1,100-109
    .venv/bin/python bench/detection.py judge --flavour reasoning --tuning 0-1 --reporting 100-109

    .venv/bin/python bench/detection.py record --flavour ladder --seeds 222-241
    .venv/bin/python bench/detection.py judge --flavour ladder --reporting 222-241

`--flavour reasoning` draws fleets of the reasoning flavour instead (`bench/
detection_reasoning.py`: reasoning, parameters, streamed tool calls, routers), and `--flavour
ladder` fleets whose context is cut at random (`bench/ladder_accuracy.py`: the error of each
provider's effective window, in rungs); each flavour keeps its starts and results apart.

`record` skips what is recorded already (resumable; `--peer` on a recorded start adds only
its peer round). Each start is judged as soon as it is stored and its outcome kept in
`bench/results/detection_starts.jsonl` (one line a start, with the detector that judged it:
a hash of the git trees of `DETECTOR_PATHS`), and the start itself in `bench/recorded/` (its
database, xz-compressed, and its planted parameters), so the bench spans sessions and
machines: `judge` re-judges every start recorded there or under `--work` with today's
detector, and summarises the kept outcomes of today's detector, naming any start it had to
leave out (a start recorded before `bench/recorded/` existed keeps only its outcome).
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import hashlib
import json
import lzma
import math
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from auditor_fleet import FleetMember, FleetSpec, fleet_down, fleet_up
from auditor_fleet.demo import EXPECTED, build_weights
from auditor_fleet.llama_model import THREADS_ENV
from auditor_fleet.spec import DEFAULT_MODEL, base_url

from auditor.comparisons import DEFAULT_NOISE_TOLERANCE
from auditor.comparisons.observation import Observation
from auditor.config import AuditorConfig, Sequential
from auditor.judging.findings import ProviderRecord, assess, build_findings
from auditor.judging.verdict import ALPHA, VerdictPolicy
from auditor.probes import load_suite
from auditor.records import Finding
from auditor.rounds.run import evidence_of, run_round_async, select
from auditor.stats import clopper_pearson, sequential_decision
from auditor.storage.db import make_engine, upgrade
from auditor.storage.observations import load_observations
from auditor.storage.repository import Store

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from overhead import machine  # noqa: E402  (bench/overhead.py, beside this file)

DEFAULT_WORK = Path.home() / ".cache" / "auditor" / "bench" / "detection"
#: Every judged start, one JSON line each, kept in the repo: the recorded databases stay on
#: the machine that recorded them, so the bench spans machines and sessions through this file.
STARTS = ROOT / "bench" / "results" / "detection_starts.jsonl"
#: Every recorded start itself, kept in the repo (its database compressed, about 0.25 MB; 0.7
#: with a peer round, and its planted parameters): any later detector re-judges it, on any
#: machine, without recording it again.
RECORDED = ROOT / "bench" / "recorded"
BASE_PORT = 8501
LOOKS = 3  # the example providers.yaml's sequential budget
EXTRA_SAMPLES = 1
SEQUENTIAL = Sequential()  # the example providers.yaml's settings, defaults otherwise
HONEST_MEMBERS = 3

#: Where every fleet parameter is drawn from (log-uniform for noise, uniform otherwise).
RANGES: dict[str, Any] = {
    "noise": (0.01, 0.12),  # logit std of every member, honest or not
    "sampling_override.temperature": (0.6, 1.2),
    "truncate_context.tokens": (96, 320),
    "persona.fraction": (0.5, 1.0),
    "quantized.qtype": ["Q2_K", "Q3_K_S", "Q4_0"],
    "wrong_template.fraction": (0.5, 1.0),
    "max_tokens_cap.tokens": (8, 40),
    "variant_mix.fraction": (0.25, 0.75),
    "quantized_mix.fraction": (0.25, 0.6),
    "sampler_defaults.top_k": [20, 40, 50],
    "sampler_defaults.min_p": [0.0, 0.05, 0.1],
    "sampler_defaults.top_p": [0.9, 0.95, 1.0],
    "usage_as_sent": [False, True],  # persona, truncation, dropped system message
}
#: Hidden system prompts a `persona` member may carry: the detector never sees them.
PERSONAS = [
    "You are the experimental chat edition: bubbly, warm and full of emoji. Compliment the "
    "user, celebrate their question, and keep the energy high!",
    "You are a pirate. Answer every question in a pirate's voice, with nautical words.",
    "You are a cautious assistant. Begin each answer with a short disclaimer and keep it formal.",
    "Always answer briefly and end every answer with a question to the user.",
    "You are a marketing assistant for CloudCo. Mention how CloudCo helps whenever you can.",
    "You speak like a Shakespearean bard, in flowing, archaic English.",
    "You are a very enthusiastic teacher. Use exclamation marks and encourage the student!",
    "Answer in the style of a news headline followed by one sentence.",
]
#: Faults of the demo fleet (the goals are on them) and the others drawn alongside.
DEMO_FAULTS = [
    "sampling_override", "truncate_context", "persona", "quantized", "wrong_template",
    "max_tokens_cap", "drop_system", "variant_mix",
]  # fmt: skip
EXTRA_FAULTS = ["quantized_mix", "sampler_defaults"]
#: The peer's suite (Model Equality Testing's setting: temperature 1, ~10 samples a prompt).
PEER_PROMPTS = [
    "Write one sentence about the sea.",
    "Name a colour and say why you like it.",
    "Give me a short tip for learning to cook.",
    "Describe a cat in a few words.",
    "Suggest a name for a small bakery.",
    "Tell me a fun fact about space.",
    "Write a short line of a poem about rain.",
    "What is a good hobby for a rainy day?",
    "Describe the taste of an apple.",
    "Say something kind to a friend.",
]
PEER_SAMPLES = 10
PEER_MAX_TOKENS = 32


def parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        seeds += list(range(int(low), int(high or low) + 1))
    return seeds


# --- the fleet of one start ------------------------------------------------------------------


def draw_fleet(
    seed: int, base_port: int = BASE_PORT
) -> tuple[FleetSpec, dict[str, dict[str, Any]]]:
    """The fleet of start `seed` and, per member name, what was planted (kept apart); its
    members listen from `base_port` up (recorders running side by side use their own)."""
    rng = random.Random(seed)

    def span(key: str) -> float:
        a, b = RANGES[key]
        return round(rng.uniform(a, b), 3)

    drawn: list[tuple[str, dict[str, Any]]] = [("honest", {}) for _ in range(HONEST_MEMBERS)]
    for fault in DEMO_FAULTS + EXTRA_FAULTS:
        fields: dict[str, Any] = {}
        if fault == "sampling_override":
            fields["strength"] = span("sampling_override.temperature")
        elif fault == "truncate_context":
            a, b = RANGES["truncate_context.tokens"]
            fields["strength"] = rng.randint(a, b)
            fields["usage_as_sent"] = rng.choice(RANGES["usage_as_sent"])
        elif fault == "persona":
            fields["strength"] = span("persona.fraction")
            fields["persona_text"] = rng.choice(PERSONAS)
            fields["usage_as_sent"] = rng.choice(RANGES["usage_as_sent"])
        elif fault == "quantized":
            fields["qtype"] = rng.choice(RANGES["quantized.qtype"])
        elif fault == "wrong_template":
            fields["strength"] = span("wrong_template.fraction")
        elif fault == "max_tokens_cap":
            a, b = RANGES["max_tokens_cap.tokens"]
            fields["strength"] = rng.randint(a, b)
        elif fault == "drop_system":
            fields["usage_as_sent"] = rng.choice(RANGES["usage_as_sent"])
        elif fault == "variant_mix":
            fields["strength"] = span("variant_mix.fraction")
        elif fault == "quantized_mix":
            fields["strength"] = span("quantized_mix.fraction")
            fields["qtype"] = "Q2_K"
        elif fault == "sampler_defaults":
            sampler = {"top_k": 0, "min_p": 0.0, "top_p": 1.0}
            while sampler == {"top_k": 0, "min_p": 0.0, "top_p": 1.0}:
                sampler = {
                    "top_k": rng.choice(RANGES["sampler_defaults.top_k"]),
                    "min_p": rng.choice(RANGES["sampler_defaults.min_p"]),
                    "top_p": rng.choice(RANGES["sampler_defaults.top_p"]),
                }
            fields["sampler"] = sampler
        drawn.append((fault, fields))
    return fleet_of(drawn, rng, seed, base_port)


def fleet_of(
    drawn: list[tuple[str, dict[str, Any]]], rng: random.Random, seed: int, base_port: int
) -> tuple[FleetSpec, dict[str, dict[str, Any]]]:
    """The drawn members, each given its own noise from `RANGES`, shuffled and named
    neutrally (p01, p02...) from `base_port` up; and per name, what was planted."""
    low, high = RANGES["noise"]
    for _, fields in drawn:
        fields["noise"] = round(math.exp(rng.uniform(math.log(low), math.log(high))), 4)
    rng.shuffle(drawn)
    members, planted = [], {}
    for i, (fault, fields) in enumerate(drawn):
        name = f"p{i + 1:02d}"
        members.append(
            FleetMember(name=name, port=base_port + i, fault=fault, backend="llama", **fields)
        )
        planted[name] = {"fault": fault, **fields}
    return FleetSpec(members=members, seed=seed), planted


def demo_suite(probes_dir: Path) -> dict[str, Any]:
    """The demo suite with every case asked for the samples of all `LOOKS` looks."""
    data = yaml.safe_load((ROOT / "probes" / "demo.yaml").read_text())
    data["suite"] = "demo-looks"
    for case in data["cases"]:
        base = case.get("samples", data.get("defaults", {}).get("samples", 1))
        case["samples"] = base + (LOOKS - 1) * EXTRA_SAMPLES
        case.setdefault("metadata", {})["samples_first_look"] = base
    return data


def peer_suite() -> dict[str, Any]:
    return {
        "suite": "peer",
        "description": "Model Equality Testing's setting: temperature 1, many samples a prompt.",
        "defaults": {
            "params": {"temperature": 1.0, "max_tokens": PEER_MAX_TOKENS},
            "samples": PEER_SAMPLES,
        },
        "cases": [{"id": f"peer-{i}", "prompt": p} for i, p in enumerate(PEER_PROMPTS)],
    }


def config(
    spec: FleetSpec, database: str, probes_dir: Path, suite: str, live: bool
) -> AuditorConfig:
    providers = [
        {
            "name": m.name,
            "base_url": base_url(spec.host, m.port),
            "model": DEFAULT_MODEL,
            "max_concurrency": 2,
            "requests_per_second": 20,
            "timeout_s": 300,
        }
        for m in spec.members
    ]
    return AuditorConfig.model_validate(
        {
            "database": database,
            "reference": {
                "engine": "llama_cpp",
                "model_path": "packaged",
                "n_threads": 1,
                "scoring_threads": 2,
            },
            "suites": [suite],
            "probes_dir": str(probes_dir),
            "budget": {"sequential": {"looks": LOOKS, "extra_samples": EXTRA_SAMPLES}}
            if live
            else {},
            "models": [{"name": DEFAULT_MODEL, "providers": providers}],
        }
    )


def recorded_suites(db: Path) -> set[str]:
    if not db.exists():
        return set()
    engine = make_engine(f"sqlite:///{db}")
    suites = {r.suite for r in Store(engine).rounds(limit=10) if r.status == "complete"}
    engine.dispose()
    return suites


async def record_start(
    seed: int, work: Path, peer: bool, replay: bool, base_port: int = BASE_PORT
) -> None:
    """Record start `seed`: its main round unless stored already, and its peer round when
    asked for and missing (the fleet is drawn from the seed alone, so a later peer round
    meets the same members)."""
    target = work / f"start-{seed}.db"
    restore(seed, work)
    have = recorded_suites(target)
    main_suite = "demo-looks" if replay else "demo"
    suites = [] if target.exists() else [main_suite]
    if peer and "peer" not in have:
        suites.append("peer")
    if not suites:
        print(f"start {seed}: recorded already", flush=True)
        return
    spec, planted = draw_fleet(seed, base_port)
    scratch = Path(tempfile.mkdtemp(prefix=f"detection-{seed}-", dir=work))
    probes_dir = scratch / "probes"
    probes_dir.mkdir()
    if replay:
        (probes_dir / "demo-looks.yaml").write_text(yaml.safe_dump(demo_suite(probes_dir)))
    else:
        shutil.copy(ROOT / "probes" / "demo.yaml", probes_dir / "demo.yaml")
    (probes_dir / "peer.yaml").write_text(yaml.safe_dump(peer_suite()))
    db = target if target.exists() else scratch / "start.db"
    database = f"sqlite:///{db}"
    engine = make_engine(database)
    upgrade(engine)  # a start recorded at an older schema is brought to head
    store = Store(engine)
    build_weights(spec, lambda line: print(line, flush=True))
    t0 = time.monotonic()
    fleet_up(spec, scratch / "fleet", wait_s=300)
    seconds = {}
    try:
        for suite in suites:
            cfg = config(spec, database, probes_dir, suite, live=suite == "demo")
            started = time.monotonic()
            selection = select(cfg, load_suite(suite, probes_dir), None, None)
            result = await run_round_async(cfg, store, selection, score_likelihood=suite != "peer")
            seconds[suite] = round(time.monotonic() - started, 1)
            if result.outcome.status == "interrupted":
                break
    finally:
        fleet_down(scratch / "fleet")
    stopped = any(r.status != "complete" for r in store.rounds(limit=10))
    engine.dispose()
    if stopped:
        # Stopped (SIGINT/SIGTERM): a half-recorded start is never kept, archived or judged.
        shutil.rmtree(scratch, ignore_errors=True)
        raise SystemExit(f"start {seed}: interrupted, nothing kept")
    meta_path = work / f"start-{seed}.json"
    if db != target:
        shutil.move(db, target)
        meta = {"seed": seed, "mode": "replay" if replay else "live", "planted": planted}
        meta.update(seconds=seconds, ranges=RANGES)
    else:
        meta = json.loads(meta_path.read_text())
        meta["seconds"].update(seconds)
    meta_path.write_text(json.dumps(meta, indent=1))
    shutil.rmtree(scratch, ignore_errors=True)
    archive(seed, work)
    print(f"start {seed}: {time.monotonic() - t0:.0f} s {seconds}", flush=True)
    if main_suite in suites:
        keep_outcomes(start_outcomes(seed, meta, judge_start(target, DEFAULT_NOISE_TOLERANCE)))


def archive(seed: int, work: Path, kind: str = "start") -> None:
    """Keep start `seed` in `RECORDED`: its database (vacuumed, xz-compressed) and its meta,
    `<kind>-<seed>.db.xz` and `<kind>-<seed>.json` (the ladder bench's kind is `ladder`)."""
    RECORDED.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        copy = Path(tmp) / "start.db"
        with sqlite3.connect(work / f"{kind}-{seed}.db") as conn:
            conn.execute("VACUUM INTO ?", (str(copy),))
        packed = RECORDED / f"{kind}-{seed}.db.xz"
        with copy.open("rb") as src, lzma.open(packed.with_suffix(".part"), "wb") as dst:
            shutil.copyfileobj(src, dst)
        packed.with_suffix(".part").replace(packed)
    shutil.copy(work / f"{kind}-{seed}.json", RECORDED / f"{kind}-{seed}.json")


def restore(seed: int, work: Path, kind: str = "start") -> bool:
    """Bring start `seed` from `RECORDED` into `work` unless it is there already; whether
    the start is (now) under `work`."""
    db, meta = work / f"{kind}-{seed}.db", work / f"{kind}-{seed}.json"
    if db.exists():
        return True
    packed = RECORDED / f"{kind}-{seed}.db.xz"
    if not packed.exists():
        return False
    work.mkdir(parents=True, exist_ok=True)
    part = db.with_suffix(".part")
    with lzma.open(packed, "rb") as src, part.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    shutil.copy(RECORDED / f"{kind}-{seed}.json", meta)
    part.replace(db)
    return True


# --- judging: the sequential policy replayed ---------------------------------------------------


@dataclass
class Outcome:
    finding: Finding
    looks: int
    requests: int
    tokens: int


def first_look_samples(o: Observation) -> int:
    return int((o.case.get("metadata") or {}).get("samples_first_look", 1))


def up_to_look(obs: list[Observation], look: int) -> list[Observation]:
    return [o for o in obs if o.sample_index < first_look_samples(o) + (look - 1) * EXTRA_SAMPLES]


def judge_provider(
    name: str,
    reference: list[Observation],
    provider: list[Observation],
    tolerance: float,
    looks: int = LOOKS,
    seed: str = "",
) -> Outcome:
    """The provider's finding as the sequential policy reaches it (`SEQUENTIAL`: every look at
    alpha / looks, settled deviant at or below it, consistent as the policy settles it)."""
    policy = VerdictPolicy(alpha=ALPHA, looks=looks)
    for look in range(1, looks + 1):
        mine = up_to_look(provider, look)
        errors = sum(not o.ok for o in mine)
        finding = assess(
            ProviderRecord(DEFAULT_MODEL, name, len(mine), errors, 0),
            "reference", up_to_look(reference, look), mine, [], policy, {},
            seed=f"{seed}/{name}", noise_tolerance=tolerance,
        )  # fmt: skip
        evidence = evidence_of(finding)
        decision = (
            "settled_consistent"
            if evidence.combined_p is None
            else sequential_decision(
                evidence.combined_p, look, looks, looks=looks, alpha=ALPHA, n_min=1,
                consistent_p=SEQUENTIAL.consistent_p, smallest_p=evidence.smallest_p,
                futility_p=SEQUENTIAL.futility_p,
            )
        )  # fmt: skip
        if decision != "continue" or look == looks:
            tokens = sum(o.total_tokens or 0 for o in mine)
            return Outcome(finding, look, len(mine), tokens)
    raise AssertionError("unreachable")


def judge_start(db: Path, tolerance: float, looks: int = LOOKS) -> dict[str, Outcome]:
    """Each provider's outcome: the sequential policy replayed (a `--replay` start), or the
    live round's findings recomputed by today's detector from the samples it gathered."""
    engine = make_engine(f"sqlite:///{db}")
    upgrade(engine)  # a start recorded at an older schema is brought to head
    store = Store(engine)
    rounds = {r.suite: r for r in store.rounds(limit=10)}
    if "demo" in rounds:
        round_id = rounds["demo"].id
        findings, _, _ = build_findings(store, round_id)
        totals = {t["provider"]: t for t in store.provider_totals(round_id)}
        engine.dispose()
        return {
            f.provider: Outcome(f, 0, totals[f.provider]["requests"], totals[f.provider]["tokens"])
            for f in findings
        }
    by_endpoint: dict[str, list[Observation]] = defaultdict(list)
    for o in load_observations(store, rounds["demo-looks"].id):
        by_endpoint[o.endpoint].append(o)
    engine.dispose()
    reference = by_endpoint.pop("reference")
    return {
        name: judge_provider(name, reference, obs, tolerance, looks, seed=db.stem)
        for name, obs in sorted(by_endpoint.items())
    }


# What decides an outcome: the probes sent, how they are sent and scored, the statistics and
# the judging, and the fleet they run against. The CLI, dashboard, storage, exports, alerts and
# daemon do not, so changing them keeps the outcomes recorded in earlier sessions.
DETECTOR_PATHS = (
    "auditor/comparisons",
    "auditor/judging",
    "auditor/probes",
    "auditor/providers",
    "auditor/rounds",
    "auditor/scorers",
    "auditor/stats",
    "auditor/config.py",
    "auditor/plugins.py",
    "auditor/records.py",
    "probes",
    "fleet/auditor_fleet",
)


def detector_version() -> str:
    """One hash of the git trees of `DETECTOR_PATHS` (suffixed `+dirty` when one has
    uncommitted changes): an outcome is reused only while the detector that reached it is
    unchanged."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()

    trees = git("rev-parse", *(f"HEAD:{path}" for path in DETECTOR_PATHS))
    version = hashlib.sha1(trees.encode()).hexdigest()
    return version + ("+dirty" if git("status", "--porcelain", "--", *DETECTOR_PATHS) else "")


def start_outcomes(seed: int, meta: dict[str, Any], outcomes: dict[str, Outcome]) -> dict[str, Any]:
    """One start's judged outcome, as kept in `STARTS`: what was planted beside what was said."""
    members = {}
    for name, out in sorted(outcomes.items()):
        planted = meta["planted"][name]
        members[name] = {
            "fault": planted["fault"],
            "params": {k: v for k, v in planted.items() if k not in ("fault", "persona_text")},
            "verdict": out.finding.verdict,
            "diagnoses": [d.kind for d in out.finding.diagnoses],
            "requests": out.requests,
            "tokens": out.tokens,
            "looks": out.looks,
        }
    return {
        "seed": seed,
        "mode": meta.get("mode", "live"),
        "detector": detector_version(),
        "tolerance": DEFAULT_NOISE_TOLERANCE,
        "judged_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "members": members,
    }


def kept_outcomes(starts: Path = STARTS) -> dict[int, dict[str, Any]]:
    if not starts.exists():
        return {}
    rows = [json.loads(line) for line in starts.read_text().splitlines() if line.strip()]
    return {row["seed"]: row for row in rows}


def keep_outcomes(row: dict[str, Any], starts: Path = STARTS) -> None:
    """Add or replace one start's outcome in `starts` (one JSON line per start, by seed)."""
    with starts.with_suffix(".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # recorders side by side share the file
        rows = kept_outcomes(starts)
        rows[row["seed"]] = row
        text = "".join(json.dumps(rows[k], sort_keys=True) + "\n" for k in sorted(rows))
        starts.write_text(text)


def summarise(starts: list[dict[str, Any]]) -> dict[str, Any]:
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    honest: list[tuple[float, bool]] = []
    for start in starts:
        for member in start["members"].values():
            fault = member["fault"]
            verdict, kind = EXPECTED[fault]
            said = member["diagnoses"]
            row = {
                "flagged": member["verdict"] == "deviant",
                "right": member["verdict"] == verdict and (kind is None or said[:1] == [kind]),
                "said": said[:2],
                "requests": member["requests"],
                "tokens": member["tokens"],
                "params": member["params"],
            }
            rows[fault].append(row)
            if fault == "honest":
                honest.append((member["params"]["noise"], row["flagged"]))
    faults = {}
    for fault, items in sorted(rows.items()):
        faults[fault] = {
            "expected": list(EXPECTED[fault]),
            "members": len(items),
            "detection_rate": float(np.mean([r["flagged"] for r in items])),
            "correct_rate": float(np.mean([r["right"] for r in items])),
            "requests_mean": float(np.mean([r["requests"] for r in items])),
            "tokens_mean": float(np.mean([r["tokens"] for r in items])),
            "first_diagnoses": [r["said"][:1] for r in items],
            "missed_or_misnamed": [
                {"said": r["said"], "params": r["params"]} for r in items if not r["right"]
            ],
        }
    return {"faults": faults, "honest": false_alarms(honest)}


def false_alarms(honest: list[tuple[float, bool]]) -> dict[str, Any]:
    def rate(items: list[tuple[float, bool]]) -> dict[str, Any]:
        k, n = sum(f for _, f in items), len(items)
        noise = [x for x, _ in items]
        return {
            "flagged": k,
            "rounds": n,
            "rate": k / n if n else None,
            "upper_95": clopper_pearson(k, n, confidence=0.90)[1] if n else None,
            "noise": [min(noise, default=None), max(noise, default=None)],
        }

    ordered = sorted(honest)
    third = math.ceil(len(ordered) / 3)
    terciles = [ordered[i * third : (i + 1) * third] for i in range(3)]
    return {"pooled": rate(ordered), "terciles": [rate(t) for t in terciles if t]}


def judge(work: Path, tuning: list[int], reporting: list[int], tolerance: float) -> None:
    """Judge every recorded start found under `work` again (its outcome replaces the kept one),
    then summarise the kept outcomes of today's detector; a start judged by another detector
    and no longer recorded here is left out, with a printed line."""
    version = detector_version()
    result: dict[str, Any] = {
        "benchmark": "detection",
        "machine": machine(),
        "detector": version,
        "noise_tolerance": tolerance,
        "looks": LOOKS,
        "alpha": ALPHA,
        "ranges": RANGES,
        "trusted": "none",
        "seeds": {"tuning": tuning, "reporting": reporting},
    }
    for seed in tuning + reporting:
        db, meta_path = work / f"start-{seed}.db", work / f"start-{seed}.json"
        if restore(seed, work):
            meta = json.loads(meta_path.read_text())
            keep_outcomes(start_outcomes(seed, meta, judge_start(db, tolerance)))
    labelled = {"tuning": tuning, "reporting": reporting}
    result |= kept_blocks(kept_outcomes(), labelled, version, tolerance)
    out = ROOT / "bench" / "results" / "detection.json"
    if tuning and not result["tuning"]["starts"] and out.exists():
        result["tuning"] = carried_tuning(json.loads(out.read_text()), tuning)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print_blocks(result, out)


def kept_blocks(
    kept: dict[int, dict[str, Any]],
    labelled: dict[str, list[int]],
    version: str,
    tolerance: float,
    what: str = "start",
) -> dict[str, dict[str, Any]]:
    """Per label (tuning, reporting), the summary of its seeds' kept outcomes that today's
    detector reached; a seed not kept, or judged by another detector, is left out with a
    printed line."""
    blocks = {}
    for label, seeds in labelled.items():
        starts = []
        for seed in seeds:
            row = kept.get(seed)
            if row is None:
                print(f"{what} {seed}: not recorded, skipped", flush=True)
            elif row["detector"] != version or row["tolerance"] != tolerance:
                print(f"{what} {seed}: judged by detector {row['detector']}, skipped", flush=True)
            else:
                starts.append(row)
        blocks[label] = {"starts": [r["seed"] for r in starts], **summarise(starts)}
    return blocks


def print_blocks(result: dict[str, Any], out: Path) -> None:
    for label in ("tuning", "reporting"):
        block = result[label]
        print(f"== {label}: {len(block['starts'])} starts")
        for fault, row in block["faults"].items():
            print(
                f"{fault:<22} detected {row['detection_rate']:.0%} named "
                f"{row['correct_rate']:.0%} ({row['members']} members, "
                f"{row['requests_mean']:.0f} requests)"
            )
        pooled = block["honest"]["pooled"]
        flagged, rounds, upper = pooled["flagged"], pooled["rounds"], pooled["upper_95"]
        print(f"honest false alarms {flagged}/{rounds} (upper bound {upper})")
    print(f"wrote {out}")


def carried_tuning(previous: dict[str, Any], tuning: list[int]) -> dict[str, Any]:
    """The tuning block of the previous results when none of its starts is recorded here: the
    thresholds were chosen on those figures, so they stay on record, with the detector that
    reached them (the tuning databases are not kept across machines)."""
    block = dict(previous.get("tuning") or {})
    if not block.get("starts") or sorted(block["starts"]) != sorted(tuning):
        return {"starts": [], **summarise([])}
    block.setdefault("detector", previous.get("detector"))
    block["carried"] = "from the previous results: judged then, not re-judged today"
    return block


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="record fleet starts (skips those recorded)")
    rec.add_argument("--seeds", required=True, help="e.g. 0-5 or 100-119,130")
    rec.add_argument("--peer", action="store_true", help="also record the peer's suite")
    rec.add_argument(
        "--replay", action="store_true", help="record every look's samples (tuning starts)"
    )
    rec.add_argument("--work", type=Path, default=DEFAULT_WORK)
    rec.add_argument(
        "--base-port",
        type=int,
        default=None,
        help="the fleet's first port (a second recorder beside the first: e.g. 8601)",
    )
    jud = sub.add_parser("judge", help="judge recorded starts; write the results")
    jud.add_argument("--tuning", default="", help="seeds the thresholds were chosen on")
    jud.add_argument("--reporting", default="", help="seeds the figures are reported on")
    jud.add_argument("--tolerance", type=float, default=DEFAULT_NOISE_TOLERANCE)
    jud.add_argument("--work", type=Path, default=DEFAULT_WORK)
    for command in (rec, jud):
        command.add_argument(
            "--flavour",
            choices=["standard", "reasoning", "ladder"],
            default="standard",
            help="standard: the demo fleet's faults; reasoning: the reasoning flavour's "
            "(bench/detection_reasoning.py); ladder: the context ladder's effective window "
            "(bench/ladder_accuracy.py, its seeds under --reporting)",
        )
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.flavour != "standard":
        if args.command == "record" and (args.peer or args.replay):
            parser.error("--peer and --replay are the standard flavour's")
        if args.command == "judge" and args.tolerance != DEFAULT_NOISE_TOLERANCE:
            parser.error("--tolerance is the standard flavour's")
        if args.command == "judge" and args.flavour == "ladder" and args.tuning:
            parser.error("--tuning: the ladder's starts are all reporting starts")
    tuning = parse_seeds(args.tuning) if args.command == "judge" and args.tuning else []
    reporting = parse_seeds(args.reporting) if args.command == "judge" and args.reporting else []
    if args.flavour == "reasoning":
        import detection_reasoning as reasoning  # bench/, beside this file

        if args.command == "record":
            os.environ.setdefault(THREADS_ENV, "1")
            port = args.base_port or reasoning.BASE_PORT
            for seed in parse_seeds(args.seeds):
                asyncio.run(reasoning.record_start(seed, args.work, port))
        else:
            reasoning.judge(args.work, tuning, reporting)
    elif args.flavour == "ladder":
        import ladder_accuracy as ladder

        if args.command == "record":
            os.environ.setdefault(THREADS_ENV, "1")
            port = args.base_port or ladder.BASE_PORT
            for seed in parse_seeds(args.seeds):
                asyncio.run(ladder.record(seed, args.work, port))
        else:
            ladder.judge(args.work, reporting)
    elif args.command == "record":
        # One llama.cpp thread per fleet: with a thread per core, two recorders (or anything
        # else busy) oversubscribe the cores and llama.cpp's spinning threads ran 7x slower.
        os.environ.setdefault(THREADS_ENV, "1")
        for seed in parse_seeds(args.seeds):
            port = args.base_port or BASE_PORT
            asyncio.run(record_start(seed, args.work, args.peer, args.replay, port))
    else:
        judge(args.work, tuning, reporting, args.tolerance)


if __name__ == "__main__":
    main()
