"""Detection power against the local fleet, per planted fault and strength, against the plain
MMD baseline. Writes bench/results/detection.json.

A fleet of honest members (two marked trusted, one not: its false alarms are the honest
rate) and faulty ones at two strengths each is audited for `--rounds` repeated rounds with
the `demo` suite (the auditor's own detector, every signal, sequential testing with `--looks`
looks: providers in doubt get more samples of the sampling probes). The baseline, the MMD test with
a Hamming kernel of Gao, Liang and Guestrin (2024) alone, gets twice the requests: a suite of
sampled prompts (temperature 1, `--mmd-samples` answers per prompt) against the reference's
samples of the same prompts, at level 0.05. Per fault and strength: detection rate (verdict
`deviant`), diagnosis accuracy (the first diagnosis is the expected kind), requests and
tokens per round, for both.

    .venv/bin/python bench/detection.py [--rounds 2] [--mmd-samples 10]
    .venv/bin/python bench/detection.py --reuse sqlite:///path/detection.db   # re-judge

Takes about 10 minutes a repetition on 2 cores (12 members); nothing else should run
meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from auditor_fleet import FleetMember, FleetSpec, fleet_down, fleet_up
from auditor_fleet.demo import EXPECTED, build_weights
from auditor_fleet.spec import DEFAULT_MODEL, base_url

from auditor.config import AuditorConfig
from auditor.judging.findings import build_findings
from auditor.judging.verdict import DETECTOR
from auditor.probes import load_suite
from auditor.records import as_utc
from auditor.rounds.run import run_round_async, select
from auditor.stats import mmd_hamming_test
from auditor.storage.db import ensure_schema, make_engine
from auditor.storage.observations import load_observations
from auditor.storage.repository import Store

ROOT = Path(__file__).resolve().parents[1]
BASE_PORT = 8201
ALPHA = 0.05

#: (name, fault, strength): honest ones first; each fault whose strength is a matter of degree
#: at a weaker and a stronger setting. The faults caught by exact signals (truncation,
#: template, max_tokens clamp, dropped system message) are left to `auditor demo`.
MEMBERS: list[tuple[str, str, float | None]] = [
    ("acme", "honest", None),
    ("bolt", "honest", None),
    ("control", "honest", None),  # honest, not trusted: its flags are false alarms
    ("flaky", "flaky", 0.3),
    ("sampling-0.7", "sampling_override", 0.7),
    ("sampling-1.0", "sampling_override", 1.0),
    ("persona-0.5", "persona", 0.5),
    ("persona-1.0", "persona", 1.0),
    ("quant-q4", "quantized", 4),
    ("quant-q2", "quantized", 2),
    ("mix-0.25", "variant_mix", 0.25),
    ("mix-1.0", "variant_mix", 1.0),
]

MMD_PROMPTS = [
    "Write one sentence about the sea.",
    "Name a colour and say why you like it.",
    "Give me a short tip for learning to cook.",
    "Describe a cat in a few words.",
    "Suggest a name for a small bakery.",
]


def mmd_suite(samples: int) -> dict[str, Any]:
    return {
        "suite": "mmd-baseline",
        "description": "Sampled prompts for the MMD baseline.",
        "defaults": {"params": {"temperature": 1.0, "max_tokens": 24}, "samples": samples},
        "cases": [{"id": f"mmd-{i}", "prompt": p} for i, p in enumerate(MMD_PROMPTS)],
    }


def fleet_spec() -> FleetSpec:
    return FleetSpec(
        members=[
            FleetMember(
                name=name,
                port=BASE_PORT + i,
                fault=fault,  # type: ignore[arg-type]
                backend="llama",
                **({} if strength is None else {"strength": strength}),
            )
            for i, (name, fault, strength) in enumerate(MEMBERS)
        ]
    )


def config_for(spec: FleetSpec, database: str, probes_dir: Path, looks: int) -> AuditorConfig:
    providers = [
        {
            "name": m.name,
            "base_url": base_url(spec.host, m.port),
            "model": DEFAULT_MODEL,
            "max_concurrency": 2,
            "requests_per_second": 20,
            "timeout_s": 300,
            "trusted": m.name in ("acme", "bolt"),
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
            "suites": ["demo"],
            "probes_dir": str(probes_dir),
            "budget": {"sequential": {"looks": looks, "extra_samples": 1}} if looks > 1 else {},
            "models": [{"name": DEFAULT_MODEL, "providers": providers}],
        }
    )


def mmd_verdicts(store: Store, round_id: str, seed: int) -> dict[str, tuple[bool, int, int]]:
    """Provider -> (MMD rejects at ALPHA, requests, tokens) on the sampled suite."""
    by_endpoint: dict[str, list[Any]] = defaultdict(list)
    for o in load_observations(store, round_id):
        by_endpoint[o.endpoint].append(o)
    reference = [o for o in by_endpoint.pop("reference", []) if o.ok]
    out = {}
    for name, obs in by_endpoint.items():
        answered = [o for o in obs if o.ok]
        result = mmd_hamming_test(
            [o.text or "" for o in reference],
            [o.text or "" for o in answered],
            rng=np.random.default_rng(seed),
            x_groups=[o.probe_hash for o in reference],
            y_groups=[o.probe_hash for o in answered],
            n_permutations=999,
        )
        tokens = sum(o.total_tokens or 0 for o in obs)
        out[name] = (result.p_value < ALPHA, len(obs), tokens)
    return out


async def one_repetition(
    config: AuditorConfig, store: Store, probes_dir: Path, seed: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    demo = await run_round_async(
        config, store, select(config, load_suite("demo", probes_dir), None, None)
    )
    findings = {f.provider: f for f in store.findings(demo.round_id)}
    baseline = await run_round_async(
        config,
        store,
        select(config, load_suite("mmd-baseline", probes_dir), None, None),
        score_likelihood=False,
    )
    return findings, mmd_verdicts(store, baseline.round_id, seed)


def summarise(
    runs: list[tuple[dict[str, Any], dict[str, Any]]], elapsed: list[float]
) -> list[dict[str, Any]]:
    rows = []
    for name, fault, strength in MEMBERS:
        expected_verdict, expected_kind = EXPECTED[fault]
        ours = [r[0][name] for r in runs]
        mmd = [r[1][name] for r in runs]
        flagged = [f.verdict == "deviant" for f in ours]
        right = [
            f.verdict == expected_verdict
            and (expected_kind is None or (f.diagnoses and f.diagnoses[0].kind == expected_kind))
            for f in ours
        ]
        rows.append(
            {
                "member": name,
                "fault": fault,
                "strength": strength,
                "expected": [expected_verdict, expected_kind],
                "rounds": len(runs),
                "auditor": {
                    "flagged_rate": float(np.mean(flagged)),
                    "correct_rate": float(np.mean(right)),
                    "diagnoses": [[d.kind for d in f.diagnoses][:2] for f in ours],
                    "requests_per_round": float(np.mean([f.requests for f in ours])),
                    "tokens_per_round": float(np.mean([f.tokens for f in ours])),
                },
                "mmd_baseline": {
                    "flagged_rate": float(np.mean([m[0] for m in mmd])),
                    "requests_per_round": float(np.mean([m[1] for m in mmd])),
                    "tokens_per_round": float(np.mean([m[2] for m in mmd])),
                },
            }
        )
    return rows


def recompute(database: str) -> tuple[list[tuple[dict[str, Any], dict[str, Any]]], list[float]]:
    """The repetitions stored in an earlier run's database, judged by today's detector."""
    engine = make_engine(database)
    ensure_schema(engine)
    store = Store(engine)
    rows = sorted(store.rounds(limit=1000), key=lambda r: r.started_at)
    demo = [r for r in rows if r.suite == "demo"]
    mmd = [r for r in rows if r.suite == "mmd-baseline"]
    runs, elapsed = [], []
    for i, (a, b) in enumerate(zip(demo, mmd, strict=True)):
        findings, detector, params = build_findings(store, a.id)
        store.save_findings(a.id, findings, detector, params)
        runs.append(({f.provider: f for f in findings}, mmd_verdicts(store, b.id, seed=i)))
        elapsed.append((as_utc(b.finished_at) - as_utc(a.started_at)).total_seconds())
    return runs, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--mmd-samples", type=int, default=10)
    parser.add_argument(
        "--looks", type=int, default=3, help="sequential looks of the auditor's round (1: plain)"
    )
    parser.add_argument(
        "--reuse",
        metavar="DATABASE_URL",
        help="judge the rounds stored by an earlier run again instead of running the fleet",
    )
    args = parser.parse_args()
    if args.reuse:
        runs, elapsed = recompute(args.reuse)
        write(runs, elapsed, args.mmd_samples, reused=args.reuse, looks=None)
        return

    work = Path(tempfile.mkdtemp(prefix="auditor-detection-"))
    probes_dir = work / "probes"
    probes_dir.mkdir()
    shutil.copy(ROOT / "probes" / "demo.yaml", probes_dir / "demo.yaml")
    (probes_dir / "mmd.yaml").write_text(yaml.safe_dump(mmd_suite(args.mmd_samples)))
    spec = fleet_spec()
    config = config_for(spec, f"sqlite:///{work / 'detection.db'}", probes_dir, args.looks)
    engine = make_engine(config.database)
    ensure_schema(engine)
    store = Store(engine)
    build_weights(spec, print)
    fleet_up(spec, work / "fleet", wait_s=180)
    runs, elapsed = [], []
    try:
        for r in range(args.rounds):
            t0 = time.monotonic()
            runs.append(asyncio.run(one_repetition(config, store, probes_dir, seed=r)))
            elapsed.append(time.monotonic() - t0)
            print(f"repetition {r + 1}/{args.rounds}: {elapsed[-1]:.0f} s", flush=True)
    finally:
        fleet_down(work / "fleet")
    write(runs, elapsed, args.mmd_samples, reused=None, looks=args.looks)


def write(
    runs: list[tuple[dict[str, Any], dict[str, Any]]],
    elapsed: list[float],
    mmd_samples: int,
    reused: str | None,
    looks: int | None,
) -> None:
    result = {
        "benchmark": "detection",
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "rounds": len(runs),
        "detector": DETECTOR,
        "findings_recomputed_from": reused,
        "suite": "demo",
        "sequential_looks": looks,  # None: re-judged rounds, see findings_recomputed_from
        "mmd_baseline_suite": {"prompts": len(MMD_PROMPTS), "samples_per_prompt": mmd_samples},
        "alpha": ALPHA,
        "seconds_per_repetition": elapsed,
        "members": summarise(runs, elapsed),
    }
    out = ROOT / "bench" / "results" / "detection.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    for row in result["members"]:
        a, b = row["auditor"], row["mmd_baseline"]
        print(
            f"{row['member']:<14} auditor {a['flagged_rate']:.2f} flagged, "
            f"{a['correct_rate']:.2f} right ({a['requests_per_round']:.0f} req); "
            f"MMD {b['flagged_rate']:.2f} flagged ({b['requests_per_round']:.0f} req)"
        )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
