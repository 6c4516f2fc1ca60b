"""A tuning fleet for telling hidden instructions from other weights (never reported).

The detection bench's starts carry one persona and one variant mix each, so a rule that
tells them apart would be tuned on a handful of members. This fleet carries every hidden
persona of `detection.PERSONAS`, each billed as if absent (`usage_as_sent`, the hard case),
beside four variant mixes, two Q2_K mixes and three honest members, every one with its own
noise drawn from the bench's range. It is recorded live like a reporting start, under the
detection bench's `--work` and archived in `bench/recorded/` beside its starts, so
`detection.py judge --tuning 0-4,900` counts it with the tuning starts.

    .venv/bin/python bench/persona_tuning.py --seed 900
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from auditor_fleet import FleetSpec, fleet_down, fleet_up
from auditor_fleet.demo import build_weights

from auditor.probes import load_suite
from auditor.rounds.run import run_round_async, select
from auditor.storage.db import make_engine, upgrade
from auditor.storage.repository import Store

sys.path.insert(0, str(Path(__file__).resolve().parent))
import detection

VARIANT_SHARES = (0.25, 0.45, 0.6, 0.75)
QUANTIZED_SHARES = (0.3, 0.5)


def tuning_fleet(seed: int, base_port: int) -> tuple[FleetSpec, dict[str, dict[str, Any]]]:
    """The fleet of `seed` and, per member name, what was planted."""
    rng = random.Random(f"persona-tuning/{seed}")
    drawn: list[tuple[str, dict[str, Any]]] = [("honest", {}) for _ in range(3)]
    for text in detection.PERSONAS:
        strength = round(rng.uniform(*detection.RANGES["persona.fraction"]), 3)
        drawn.append(
            ("persona", {"strength": strength, "persona_text": text, "usage_as_sent": True})
        )
    drawn += [("variant_mix", {"strength": share}) for share in VARIANT_SHARES]
    drawn += [("quantized_mix", {"strength": s, "qtype": "Q2_K"}) for s in QUANTIZED_SHARES]
    return detection.fleet_of(drawn, rng, seed, base_port)


async def record(seed: int, work: Path, base_port: int) -> None:
    target = work / f"start-{seed}.db"
    if detection.restore(seed, work):
        print(f"start {seed}: recorded already", flush=True)
        return
    spec, planted = tuning_fleet(seed, base_port)
    scratch = Path(tempfile.mkdtemp(prefix=f"persona-{seed}-", dir=work))
    probes_dir = scratch / "probes"
    probes_dir.mkdir()
    shutil.copy(detection.ROOT / "probes" / "demo.yaml", probes_dir / "demo.yaml")
    database = f"sqlite:///{scratch / 'start.db'}"
    engine = make_engine(database)
    upgrade(engine)
    store = Store(engine)
    build_weights(spec, lambda line: print(line, flush=True))
    started = time.monotonic()
    fleet_up(spec, scratch / "fleet", wait_s=300)
    try:
        cfg = detection.config(spec, database, probes_dir, "demo", live=True)
        selection = select(cfg, load_suite("demo", probes_dir), None, None)
        result = await run_round_async(cfg, store, selection)
    finally:
        fleet_down(scratch / "fleet")
    engine.dispose()
    if result.outcome.status == "interrupted":
        shutil.rmtree(scratch, ignore_errors=True)
        raise SystemExit(f"start {seed}: interrupted, nothing kept")
    shutil.move(scratch / "start.db", target)
    meta = {"seed": seed, "mode": "live", "planted": planted, "fleet": "persona_tuning"}
    meta["seconds"] = {"demo": round(time.monotonic() - started, 1)}
    (work / f"start-{seed}.json").write_text(json.dumps(meta, indent=1))
    shutil.rmtree(scratch, ignore_errors=True)
    detection.archive(seed, work)
    print(f"start {seed}: {meta['seconds']}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=900)
    parser.add_argument("--work", type=Path, default=detection.DEFAULT_WORK)
    parser.add_argument("--base-port", type=int, default=8701)
    args = parser.parse_args()
    asyncio.run(record(args.seed, args.work, args.base_port))


if __name__ == "__main__":
    main()
