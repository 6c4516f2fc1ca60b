"""The peer method beside the auditor: Model Equality Testing on the same fleet starts.

Model Equality Testing (Gao, Liang and Guestrin, 2024; the `model-equality-testing` package,
0.0.2) asks a provider and the reference the same prompts at temperature 1 and runs a
two-sample test on the completions. This script runs the package's own test at the paper's
setting: completions as unicode code points (`tokenize_unicode`), both samples padded to a
shared length (`pad_to_length`), the MMD statistic with the Hamming kernel (`mmd_hamming`)
and its permutation p-value (`run_two_sample_test`, `pvalue_type="permutation_pvalue"`).

It reads the `peer` rounds that `bench/detection.py record --peer` stores beside each fleet
start (the 10 `PEER_PROMPTS`, `PEER_SAMPLES` samples each, for every member and for the
`reference` endpoint) and, for every provider and n in `N_GRID` requests per provider, tests
the provider's first n / 10 samples of each prompt against the reference's first n / 10
(errors left out); a provider is flagged at p <= `LEVEL`. It writes
`bench/results/peer_met.json`: MET's power per planted fault and n, its false-alarm rate on
the honest members, the auditor's detection rate and mean requests from
`bench/results/detection.json` beside them, per fault whether the auditor reaches at least
MET's power with at most half of MET's requests, and the faults MET cannot see; and
`bench/results/peer_met.png`, power against requests per provider.

    .venv/bin/pip install -e '.[peer]'          # torch (CPU), the package, transformers
    .venv/bin/python bench/detection.py record --seeds 100-119 --peer
    .venv/bin/python bench/detection.py judge --tuning 0-4 --reporting 100-119
    .venv/bin/python bench/peer_met.py --seeds 100-119 [--jobs 2]

Each start's tests are kept in `<work>/peer-met-<seed>.json` and reused while the settings
and the round are the same (`--fresh` recomputes them).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import zlib
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from auditor.comparisons.observation import Observation
from auditor.stats import clopper_pearson
from auditor.storage.db import make_engine, upgrade
from auditor.storage.observations import load_observations
from auditor.storage.repository import Store

os.environ.setdefault("TQDM_DISABLE", "1")  # the package's progress bar, one per test

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from detection import (  # noqa: E402  (bench/detection.py, beside this file)
    DEFAULT_WORK,
    PEER_MAX_TOKENS,
    PEER_PROMPTS,
    PEER_SAMPLES,
    parse_seeds,
    restore,
)
from overhead import machine  # noqa: E402

try:
    import torch
    from model_equality_testing.algorithm import run_two_sample_test
    from model_equality_testing.distribution import CompletionSample
    from model_equality_testing.utils import pad_to_length, tokenize_unicode
except ImportError as exc:  # the peer extra is bench-only
    raise SystemExit(f"{exc}: install the peer extra, .venv/bin/pip install -e '.[peer]'") from exc

RESULTS = ROOT / "bench" / "results"
REFERENCE = "reference"
N_GRID = (10, 20, 50, 100)  # requests per provider (and as many reference samples)
LEVEL = 0.05  # flagged at p <= LEVEL
PERMUTATIONS = 1000  # the package's default b for run_two_sample_test
PERMUTATION_SEED = 0
MIN_PER_PROMPT = 2  # the statistic's within-sample terms need two answers to a prompt
BLIND_MARGIN = 0.10  # "cannot see": power at the largest n <= false alarms + this
STAT_TYPE = "mmd_hamming"
PVALUE_TYPE = "permutation_pvalue"
FAULTS = [
    "sampling_override", "truncate_context", "persona", "quantized", "wrong_template",
    "max_tokens_cap", "drop_system", "variant_mix", "quantized_mix", "sampler_defaults",
]  # fmt: skip
HONEST = "honest"

SETTINGS: dict[str, Any] = {
    "package": "model-equality-testing",
    "calls": [
        "model_equality_testing.utils.tokenize_unicode(texts)  # each side, pad -1",
        "model_equality_testing.utils.pad_to_length(side, L)  # L = longest of the pair",
        "model_equality_testing.distribution.CompletionSample(prompts, completions, m)",
        f"torch.manual_seed(seed); model_equality_testing.algorithm.run_two_sample_test("
        f"provider, reference, pvalue_type={PVALUE_TYPE!r}, stat_type={STAT_TYPE!r}, "
        f"b={PERMUTATIONS})",
    ],
    "statistic": "model_equality_testing.tests.mmd_hamming (normalized Hamming kernel, 0 "
    "across prompts, U-statistic without the diagonal)",
    "pvalue": "model_equality_testing.pvalue.two_sample_permutation_pvalue: share of "
    f"{PERMUTATIONS} label permutations (torch.randperm) with a statistic >= the observed",
    "permutations": PERMUTATIONS,
    "seed": "torch.manual_seed(crc32(f'{PERMUTATION_SEED}/{start}/{provider}/{n}')) before each "
    f"test, PERMUTATION_SEED = {PERMUTATION_SEED}",
    "level": LEVEL,
    "n_grid": list(N_GRID),
    "samples": "n requests per provider: the first n / 10 samples (by sample_index) of each of "
    "the 10 prompts, and the same of the reference's; answers with ok=False are left out (the "
    f"request is spent). Below {MIN_PER_PROMPT} a prompt (n = 10) the statistic is undefined "
    "(no within-sample pair: the package returns NaN, which its p-value turns into 0, a "
    f"rejection), so n = 10 takes {MIN_PER_PROMPT} samples of each of the first 5 prompts",
    "padding": "to the longest completion of the pair: the normalized Hamming MMD is the same "
    "up to a constant factor for any longer padding, so the p-value does not depend on it",
    "suite": {
        "prompts": len(PEER_PROMPTS),
        "samples": PEER_SAMPLES,
        "temperature": 1.0,
        "max_tokens": PEER_MAX_TOKENS,
    },
    "blind_margin": BLIND_MARGIN,
}


# --- the samples ----------------------------------------------------------------------------


@dataclass
class Side:
    """One side of a test: each answer's prompt number and text."""

    prompts: list[int]
    texts: list[str]
    asked: int  # requests spent, errors included


def probe_order(ids: Iterable[str]) -> list[str]:
    """The suite's case order (peer-0, peer-1, ..., peer-10 after peer-9)."""
    return sorted(set(ids), key=lambda p: (len(p), p))


def layout(n: int, prompts: int) -> tuple[int, int]:
    """(prompts used, samples a prompt) for n requests: n / prompts each, at least
    `MIN_PER_PROMPT` each on fewer prompts."""
    per = max(MIN_PER_PROMPT, n // prompts)
    return min(prompts, n // per), per


def take(by_probe: dict[str, list[Observation]], probes: list[str], n: int) -> Side:
    used, per = layout(n, len(probes))
    side = Side([], [], 0)
    for index, probe in enumerate(probes[:used]):
        first = sorted(by_probe.get(probe, []), key=lambda o: o.sample_index)[:per]
        side.asked += len(first)
        for o in first:
            if o.ok:
                side.prompts.append(index)
                side.texts.append(o.text or "")
    return side


# --- the test -------------------------------------------------------------------------------


def test_seed(start: int, provider: str, n: int) -> int:
    return zlib.crc32(f"{PERMUTATION_SEED}/{start}/{provider}/{n}".encode())


def met(provider: Side, reference: Side, m: int, seed: int) -> dict[str, Any]:
    """The package's two-sample test, provider against reference, as the paper runs it."""
    out: dict[str, Any] = {"n_provider": len(provider.texts), "n_reference": len(reference.texts)}
    if not provider.texts or not reference.texts:
        return {**out, "p": None, "statistic": None, "reject": False, "seconds": 0.0}
    torch.set_num_threads(1)
    a, b = tokenize_unicode(provider.texts), tokenize_unicode(reference.texts)
    length = max(a.shape[1], b.shape[1])
    a, b = pad_to_length(a, length), pad_to_length(b, length)  # integer arrays, pad -1
    sample = CompletionSample(prompts=np.array(provider.prompts), completions=a, m=m)
    other = CompletionSample(prompts=np.array(reference.prompts), completions=b, m=m)
    torch.manual_seed(seed)
    started = time.perf_counter()
    p, stat = run_two_sample_test(
        sample, other, pvalue_type=PVALUE_TYPE, stat_type=STAT_TYPE, b=PERMUTATIONS
    )
    seconds = time.perf_counter() - started
    release_package_caches()
    if not math.isfinite(float(stat)):  # no within-sample pair: the statistic is undefined
        return {**out, "p": None, "statistic": None, "reject": False, "seconds": seconds}
    return {
        **out,
        "length": length,
        "p": float(p),
        "statistic": float(stat),
        "reject": bool(p <= LEVEL),
        "seconds": round(seconds, 3),
    }


def release_package_caches() -> None:
    """Empty the package's unbounded `functools.cache`s on `CompletionSample` methods: keyed
    by instance, they keep every permuted sample of every test alive (two per permutation,
    1,000 permutations a test), which grew one process to about 20 GiB on a 13-member start."""
    for attribute in vars(CompletionSample).values():
        cached = attribute.fget if isinstance(attribute, property) else attribute
        if hasattr(cached, "cache_clear"):
            cached.cache_clear()


def _run(job: tuple[dict[str, Any], Side, Side, int, int]) -> dict[str, Any]:
    row, provider, reference, m, seed = job
    return {**row, **met(provider, reference, m, seed)}


# --- one start ------------------------------------------------------------------------------


def peer_round(db: Path) -> tuple[str, dict[str, dict[str, list[Observation]]]] | None:
    """The start's `peer` round id and its answers per endpoint and probe, or None."""
    engine = make_engine(f"sqlite:///{db}")
    try:
        upgrade(engine)  # a start recorded at an older schema is brought to head
        store = Store(engine)
        rounds = {r.suite: r for r in store.rounds(limit=10)}
        if "peer" not in rounds:
            return None
        by: dict[str, dict[str, list[Observation]]] = defaultdict(lambda: defaultdict(list))
        for o in load_observations(store, rounds["peer"].id):
            by[o.endpoint][o.probe_id].append(o)
        return rounds["peer"].id, by
    finally:
        engine.dispose()


def published_tests(seed: int) -> list[dict[str, Any]]:
    """Start `seed`'s tests as the last published `peer_met.json` holds them (same settings):
    the recorded databases stay on the machine that recorded them, the results travel."""
    path = RESULTS / "peer_met.json"
    if not path.exists():
        return []
    published = json.loads(path.read_text())
    if published.get("settings") != SETTINGS:
        return []
    return [t for t in published.get("tests", []) if t["start"] == seed]


def start_tests(
    seed: int, work: Path, pool: ProcessPoolExecutor | None, fresh: bool
) -> list[dict[str, Any]] | None:
    """Every provider's test at every n for start `seed` (None: no peer round to test)."""
    db, meta_path = work / f"start-{seed}.db", work / f"start-{seed}.json"
    cache = work / f"peer-met-{seed}.json"
    if not restore(seed, work) or not meta_path.exists():
        kept = published_tests(seed)
        if kept:
            print(f"start {seed}: {len(kept)} tests kept from peer_met.json", flush=True)
            return kept
        print(f"start {seed}: not recorded, skipped", flush=True)
        return None
    found = peer_round(db)
    if found is None:
        print(f"start {seed}: no peer round (recorded without --peer), skipped", flush=True)
        return None
    round_id, by = found
    if not fresh and cache.exists():
        kept = json.loads(cache.read_text())
        if kept.get("settings") == SETTINGS and kept.get("round") == round_id:
            print(f"start {seed}: {len(kept['tests'])} tests kept from {cache.name}", flush=True)
            return list(kept["tests"])
    planted = json.loads(meta_path.read_text())["planted"]
    if REFERENCE not in by:
        print(f"start {seed}: the peer round has no {REFERENCE!r} answers, skipped", flush=True)
        return None
    reference = by.pop(REFERENCE)
    probes = probe_order(reference)
    jobs = []
    for name in sorted(by):
        fault = planted.get(name, {}).get("fault", "unknown")
        for n in N_GRID:
            row = {"start": seed, "provider": name, "fault": fault, "n": n}
            mine, theirs = take(by[name], probes, n), take(reference, probes, n)
            row["asked"] = mine.asked
            jobs.append((row, mine, theirs, len(probes), test_seed(seed, name, n)))
    started = time.monotonic()
    tests = list(pool.map(_run, jobs) if pool is not None else map(_run, jobs))
    cache.write_text(json.dumps({"settings": SETTINGS, "round": round_id, "tests": tests}))
    flagged = sorted({t["provider"] for t in tests if t["reject"] and t["n"] == max(N_GRID)})
    print(
        f"start {seed}: {len(tests)} tests in {time.monotonic() - started:.0f} s; "
        f"flagged at n={max(N_GRID)}: {', '.join(flagged) or 'none'}",
        flush=True,
    )
    return tests


# --- the summary ----------------------------------------------------------------------------


def rate(k: int, n: int) -> dict[str, Any]:
    low, high = clopper_pearson(k, n) if n else (None, None)
    return {"rejected": k, "members": n, "rate": k / n if n else None, "ci_95": [low, high]}


def met_summary(tests: list[dict[str, Any]]) -> dict[str, Any]:
    by: dict[str, dict[int, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for t in tests:
        by[t["fault"]][t["n"]].append(t)
    power: dict[str, Any] = {}
    for fault in sorted(by, key=lambda f: (f == HONEST, f)):
        power[fault] = {
            str(n): {
                **rate(sum(t["reject"] for t in rows), len(rows)),
                "undefined": sum(t["p"] is None for t in rows),
                "p_median": median([t["p"] for t in rows if t["p"] is not None]),
            }
            for n, rows in sorted(by[fault].items())
        }
    false_alarms = {}
    for n, row in power.pop(HONEST, {}).items():
        upper = clopper_pearson(row["rejected"], row["members"], confidence=0.90)[1]
        false_alarms[n] = {**row, "upper_95": upper if row["members"] else None}
    return {"power": power, "false_alarms": false_alarms}


def median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def auditor_figures(path: Path) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """The auditor's detection rate and mean requests per fault from `bench/detection.py
    judge`, and where they came from (its `reporting` block; an older file's `members`)."""
    if not path.exists():
        return {}, {"file": str(path), "format": "missing", "note": "no auditor figures"}
    data = json.loads(path.read_text())
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    source: dict[str, Any] = {"file": str(shown)}
    block = data.get("reporting")
    if isinstance(block, dict) and not block.get("faults"):
        note = (
            "detection.json has no reporting figures (no reporting start judged): run "
            "`bench/detection.py judge --reporting <seeds>`; its tuning figures are not used"
        )
        return {}, {**source, "format": "reporting (empty)", "note": note}
    if isinstance(block, dict):
        figures = {
            fault: {
                "detection_rate": row.get("detection_rate"),
                "requests_mean": row.get("requests_mean"),
                "tokens_mean": row.get("tokens_mean"),
                "members": row.get("members"),
            }
            for fault, row in block["faults"].items()
        }
        pooled = (block.get("honest") or {}).get("pooled") or {}
        if HONEST in figures and pooled.get("rate") is not None:
            figures[HONEST]["detection_rate"] = pooled["rate"]
        return figures, {**source, "format": "reporting", "starts": block.get("starts")}
    if isinstance(data.get("members"), list):  # before the random fleet starts
        rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for member in data["members"]:
            rows[member["fault"]].append(member)
        figures = {}
        for fault, items in rows.items():
            rounds = [m.get("rounds", 1) for m in items]
            figures[fault] = {
                "detection_rate": float(
                    np.average([m["auditor"]["flagged_rate"] for m in items], weights=rounds)
                ),
                "requests_mean": float(
                    np.average([m["auditor"]["requests_per_round"] for m in items], weights=rounds)
                ),
                "tokens_mean": float(
                    np.average([m["auditor"]["tokens_per_round"] for m in items], weights=rounds)
                ),
                "members": len(items),
            }
        note = (
            "older detection.json (a fixed demo fleet judged per member, no `reporting` block): "
            "its members are not the starts MET was run on; rerun `bench/detection.py judge "
            "--reporting ...` for figures on the same starts"
        )
        return figures, {**source, "format": "members (older)", "note": note}
    return {}, {**source, "format": "unrecognized", "note": "no `reporting` or `members` block"}


def goal(
    auditor: dict[str, Any] | None, power: dict[str, Any] | None, false_alarms: dict[str, Any]
) -> dict[str, Any]:
    """Does the auditor reach at least MET's power with at most half of MET's requests?

    MET is taken at the smallest n of the grid with n >= 2 x the auditor's mean requests. When
    2 x those requests exceed the grid, the goal is missed if MET at the largest n (fewer than
    twice the auditor's requests) already has more power (power grows with n), met if the
    auditor flags every member (no power is higher), and undecided otherwise."""
    if not auditor or auditor.get("requests_mean") is None or not power:
        return {"verdict": "no data", "rule": "auditor or MET figures missing"}
    requests, detected = auditor["requests_mean"], auditor["detection_rate"]
    grid = sorted(int(n) for n in power)
    above = [n for n in grid if n >= 2 * requests]
    if above:
        n = above[0]
        met_power = power[str(n)]["rate"]
        verdict = "met" if detected >= met_power else "not met"
        rule = f"auditor at {requests:.0f} requests vs MET at n = {n} (>= 2 x {requests:.0f})"
    elif detected >= 1.0:  # no n gives MET more than all members
        n = grid[-1]
        met_power = power[str(n)]["rate"]
        verdict = "met"
        rule = f"the auditor flags every member at {requests:.0f} requests: no n beats it"
    else:
        n = grid[-1]
        met_power = power[str(n)]["rate"]
        verdict = "not met" if detected < met_power else "undecided"
        outcome = (
            "already beats the auditor"
            if verdict == "not met"
            else "does not beat it; larger n not measured"
        )
        rule = (
            f"2 x {requests:.0f} requests is beyond the grid: MET at n = {n} (< 2 x the "
            f"auditor's requests) {outcome}"
        )
    return {
        "verdict": verdict,
        "rule": rule,
        "auditor_rate": detected,
        "auditor_requests": requests,
        "met_n": n,
        "met_power": met_power,
        "met_false_alarm": (false_alarms.get(str(n)) or {}).get("rate"),
    }


def blind(power: dict[str, Any], false_alarms: dict[str, Any]) -> list[str]:
    """Faults whose power at the largest n is within `BLIND_MARGIN` of the false-alarm rate."""
    top = str(max(N_GRID))
    floor = (false_alarms.get(top) or {}).get("rate") or 0.0
    return [
        fault
        for fault, rows in power.items()
        if top in rows
        and rows[top]["rate"] is not None
        and rows[top]["rate"] <= floor + BLIND_MARGIN
    ]


def plot(result: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    power, false_alarms = result["met"]["power"], result["met"]["false_alarms"]
    auditor = result["auditor"]["faults"]
    faults = [f for f in FAULTS if f in power] + [f for f in power if f not in FAULTS]
    colours = plt.get_cmap("tab10" if len(faults) <= 10 else "tab20")
    fig, ax = plt.subplots(figsize=(10, 6))
    for i, fault in enumerate(faults):
        colour = colours(i % colours.N)
        ns = sorted(int(n) for n in power[fault])
        ax.plot(ns, [power[fault][str(n)]["rate"] for n in ns], "o-", color=colour, label=fault)
        mine = auditor.get(fault)
        if mine and mine.get("requests_mean") is not None:
            ax.plot(
                mine["requests_mean"], mine["detection_rate"], "*", color=colour, markersize=16,
                markeredgecolor="black",
            )  # fmt: skip
    if false_alarms:
        ns = sorted(int(n) for n in false_alarms)
        ax.plot(
            ns, [false_alarms[str(n)]["rate"] for n in ns], "s--", color="black",
            label="honest (MET false alarms)",
        )  # fmt: skip
        mine = auditor.get(HONEST)
        if mine and mine.get("requests_mean") is not None:
            ax.plot(
                mine["requests_mean"], mine["detection_rate"], "*", color="white", markersize=16,
                markeredgecolor="black",
            )  # fmt: skip
    ax.axhline(LEVEL, color="grey", linewidth=0.8, linestyle=":")
    ax.plot([], [], "*", color="grey", markersize=12, markeredgecolor="black", label="auditor")
    ax.set_xlabel("requests per provider (MET: as many reference samples again)")
    ax.set_ylabel("share of members flagged")
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlim(0, max(N_GRID) + 5)
    starts = result["starts"]
    ax.set_title(
        f"MET (MMD-Hamming, permutation p <= {LEVEL}) lines vs the auditor (stars), "
        f"{len(starts)} start{'s' if len(starts) != 1 else ''}"
    )
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def seconds_per_test(tests: list[dict[str, Any]]) -> dict[str, Any]:
    by: dict[int, list[float]] = defaultdict(list)
    for t in tests:
        if t["p"] is not None:
            by[t["n"]].append(t["seconds"])
    return {
        str(n): {"median": median(v), "max": max(v), "tests": len(v)} for n, v in sorted(by.items())
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="100-119", help="fleet starts, e.g. 100-119,130")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--jobs", type=int, default=1, help="processes running tests")
    parser.add_argument("--fresh", action="store_true", help="recompute kept tests")
    parser.add_argument("--detection", type=Path, default=RESULTS / "detection.json")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to write")
    args = parser.parse_args()
    started = time.monotonic()
    tests: list[dict[str, Any]] = []
    starts = []
    pool = ProcessPoolExecutor(args.jobs) if args.jobs > 1 else None
    try:
        for seed in parse_seeds(args.seeds):
            found = start_tests(seed, args.work, pool, args.fresh)
            if found is not None:
                tests += found
                starts.append(seed)
    finally:
        if pool is not None:
            pool.shutdown()
    if not tests:
        raise SystemExit("no start with a peer round: nothing to write")
    summary = met_summary(tests)
    figures, source = auditor_figures(args.detection.resolve())
    if source.get("starts") is not None and sorted(source["starts"]) != starts:
        source["note"] = (
            f"the auditor's figures are on starts {source['starts']}, MET's on {starts}"
        )
    power, false_alarms = summary["power"], summary["false_alarms"]
    verdicts = {
        fault: goal(figures.get(fault), power.get(fault), false_alarms)
        for fault in [f for f in FAULTS if f in power or f in figures]
        + sorted(f for f in power if f not in FAULTS)
    }
    result: dict[str, Any] = {
        "benchmark": "peer_met",
        "machine": machine(),
        "versions": {name: version(name) for name in ("model-equality-testing", "torch", "numpy")},
        "settings": SETTINGS,
        "starts": starts,
        "met": summary,
        "auditor": {"source": source, "faults": figures},
        "goal": {
            "statement": "the auditor reaches at least MET's power with at most half of "
            "MET's requests",
            "faults": verdicts,
            "met": sorted(f for f, v in verdicts.items() if v["verdict"] == "met"),
            "not_met": sorted(f for f, v in verdicts.items() if v["verdict"] == "not met"),
        },
        "met_cannot_see": blind(power, false_alarms),
        "seconds_per_test": seconds_per_test(tests),
        "jobs": args.jobs,
        "seconds": round(time.monotonic() - started, 1),
        "tests": tests,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    out = args.results / "peer_met.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    plot(result, args.results / "peer_met.png")
    print(f"== MET on {len(starts)} starts (flagged at p <= {LEVEL}; {PERMUTATIONS} permutations)")
    print(f"{'fault':<18}" + "".join(f"{'n=' + str(n):>8}" for n in N_GRID) + "   auditor")
    rows = {**power, **({HONEST: false_alarms} if false_alarms else {})}
    for fault, by_n in rows.items():
        cells = "".join(
            f"{by_n[str(n)]['rate']:>8.0%}" if str(n) in by_n else f"{'-':>8}" for n in N_GRID
        )
        mine = figures.get(fault)
        said = (
            f"   {mine['detection_rate']:.0%} at {mine['requests_mean']:.0f} requests"
            if mine and mine.get("requests_mean") is not None
            else "   -"
        )
        verdict = verdicts.get(fault, {}).get("verdict", "")
        print(f"{fault:<18}{cells}{said}  {verdict}")
    print(f"MET cannot see: {', '.join(result['met_cannot_see']) or 'none'}")
    if source.get("note"):
        print(f"note: {source['note']}")
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
