"""The context ladder's accuracy on fleets whose context faults are drawn at random per start.

Each fleet start (a seed) draws, from `RANGES`, members of the packaged model serving a
`FLEET_N_CTX`-token context: `HONEST` honest members, `CUTS` members that silently keep only
the last N tokens of the prompt (`truncate_context`; usage billed as sent or as kept, drawn),
and one that refuses prompts above N tokens with vLLM's 400 (`context_limit`); every N and
every member's numeric noise drawn at random, members named neutrally and shuffled, none
trusted. The shipped `ladder` suite runs against them at a declared window of `WINDOW`
tokens, climbing as `auditor run` does (a provider failing two rungs in a row is sent no
higher rung). The detector is told nothing of the fleet: the planted N are written beside
each database (`ladder-<seed>.json`), never into it.

Per member, the *truth* is the top rung whose every prompt fits under N, counted as the
member counts it: for `context_limit` the reference's token count of each case of the rung
(chat template included, as the member's own count); for `truncate_context` the tokens of the
case's message text alone (the member keeps the last N of those, the template's on top: 30
more for a one-message prompt of the packaged model). An honest member's is the top rung; the
*error* is the reported effective window's rung minus the truth's (the rung below the first:
"below the ladder"). `judge` writes `bench/results/ladder_accuracy.json`: per kind, how often the
window is exact and within one rung of the truth, the mean absolute error in rungs, what the
ladder cost each member (requests and tokens) and each start (seconds).

    .venv/bin/python bench/ladder_accuracy.py record --seeds 222-241 [--base-port 8801]
    .venv/bin/python bench/ladder_accuracy.py judge --seeds 222-241

`record` skips recorded starts and archives each in `bench/recorded/ladder-<seed>.*`, so the
bench spans sessions; `judge` re-judges every recorded start with today's detector.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from auditor_fleet import fleet_down, fleet_up
from auditor_fleet.backends import ChatMessage
from auditor_fleet.llama_backend import text_tokens as member_text_tokens
from auditor_fleet.spec import DEFAULT_MODEL, base_url

from auditor.config import AuditorConfig
from auditor.judging.findings import build_findings
from auditor.probes import load_suite
from auditor.providers.llama_cpp import packaged_model_path
from auditor.rounds.run import run_round_async, select
from auditor.storage.db import ensure_schema, make_engine, upgrade
from auditor.storage.observations import load_observations, round_endpoints
from auditor.storage.repository import Store

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from detection import archive, fleet_of, parse_seeds, restore  # noqa: E402  (bench/detection.py)
from overhead import machine  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "ladder_accuracy.json"
KIND = "ladder"  # its starts are bench/recorded/ladder-<seed>.* (`detection.archive`)
DEFAULT_WORK = Path.home() / ".cache" / "auditor" / "bench" / "ladder"
BASE_PORT = 8801
WINDOW = 2048  # the declared window: the ladder's top rung is just under it
FLEET_N_CTX = WINDOW + 256  # the members' own context: room for the template and the answer
HONEST, CUTS = 2, 2
RANGES: dict[str, Any] = {
    "noise": (0.01, 0.12),  # logit std, log-uniform (`detection.fleet_of`)
    "truncate_context.tokens": (150, 1900),  # tokens kept, uniform
    "context_limit.tokens": (150, 1900),  # tokens accepted, uniform
    "usage_as_sent": [False, True],  # a cut member bills the prompt as sent, or as kept
}


def draw(seed: int, base_port: int) -> tuple[Any, dict[str, dict[str, Any]]]:
    rng = random.Random(seed)
    drawn: list[tuple[str, dict[str, Any]]] = [("honest", {}) for _ in range(HONEST)]
    for _ in range(CUTS):
        a, b = RANGES["truncate_context.tokens"]
        cut = {"strength": rng.randint(a, b), "usage_as_sent": rng.choice(RANGES["usage_as_sent"])}
        drawn.append(("truncate_context", cut))
    a, b = RANGES["context_limit.tokens"]
    drawn.append(("context_limit", {"strength": rng.randint(a, b)}))
    spec, planted = fleet_of(drawn, rng, seed, base_port)
    return spec.model_copy(update={"n_ctx": FLEET_N_CTX}), planted


def config(spec: Any, database: str, probes_dir: Path) -> AuditorConfig:
    providers = [
        {"name": m.name, "base_url": base_url(spec.host, m.port), "model": DEFAULT_MODEL,
         "max_concurrency": 1, "requests_per_second": 20, "timeout_s": 600}
        for m in spec.members
    ]  # fmt: skip
    return AuditorConfig.model_validate(
        {
            "database": database,
            "reference": {"engine": "llama_cpp", "model_path": "packaged",
                          "n_ctx": FLEET_N_CTX, "n_threads": 1},
            "suites": ["ladder"],
            "probes_dir": str(probes_dir),
            "models": [{"name": DEFAULT_MODEL, "profile": {"context_window": WINDOW},
                        "providers": providers}],
        }
    )  # fmt: skip


async def record(seed: int, work: Path, base_port: int) -> None:
    if restore(seed, work, KIND):
        print(f"start {seed}: recorded already", flush=True)
        return
    spec, planted = draw(seed, base_port)
    scratch = Path(tempfile.mkdtemp(prefix=f"ladder-{seed}-", dir=work))
    probes = scratch / "probes"
    probes.mkdir()
    shutil.copy(ROOT / "probes" / "ladder.yaml", probes / "ladder.yaml")
    db = scratch / "start.db"
    database = f"sqlite:///{db}"
    store = Store(make_engine(database))
    ensure_schema(store.engine)
    started = time.monotonic()
    fleet_up(spec, scratch / "fleet", wait_s=300)
    try:
        cfg = config(spec, database, probes)
        selection = select(cfg, load_suite("ladder", probes), None, None)
        result = await run_round_async(cfg, store, selection, score_likelihood=False)
    finally:
        fleet_down(scratch / "fleet")
    store.engine.dispose()
    if result.outcome.status != "complete":
        shutil.rmtree(scratch, ignore_errors=True)
        raise SystemExit(f"start {seed}: {result.outcome.status}, nothing kept")
    seconds = round(time.monotonic() - started, 1)
    log = (scratch / "fleet" / "fleet.log").read_text(errors="replace").splitlines()
    reuse = [line for line in log if line.startswith("fleet model ")]  # its exit summary
    meta = {"seed": seed, "round_id": result.round_id, "planted": planted, "seconds": seconds,
            "window": WINDOW, "fleet_n_ctx": FLEET_N_CTX, "ranges": RANGES,
            "fleet_prompt_reuse": reuse}  # fmt: skip
    shutil.move(db, work / f"ladder-{seed}.db")
    (work / f"ladder-{seed}.json").write_text(json.dumps(meta, indent=1))
    shutil.rmtree(scratch, ignore_errors=True)
    archive(seed, work, KIND)
    print(f"start {seed}: {seconds} s", flush=True)


@functools.cache
def _vocabulary() -> Any:
    """The packaged model's tokenizer (its vocabulary only: no weights loaded)."""
    from llama_cpp import Llama

    return Llama(model_path=str(packaged_model_path()), vocab_only=True, verbose=False)


def text_tokens(messages: list[dict[str, Any]]) -> int:
    """The tokens of the messages' text without the chat template's, counted as a
    `truncate_context` member counts what it keeps (`auditor_fleet.llama_backend`)."""
    vocabulary = _vocabulary()
    return sum(len(member_text_tokens(vocabulary, ChatMessage.model_validate(m))) for m in messages)


def rung_of(length: int | None, lengths: list[int]) -> int:
    """The index of a reported window among the rungs (-1: below the ladder)."""
    return -1 if length is None else lengths.index(length)


def judge_start(seed: int, work: Path) -> list[dict[str, Any]]:
    meta = json.loads((work / f"ladder-{seed}.json").read_text())
    store = Store(make_engine(f"sqlite:///{work / f'ladder-{seed}.db'}"))
    upgrade(store.engine)  # a start recorded at an older schema is brought to head
    round_id = meta["round_id"]
    findings = {f.provider: f for f in build_findings(store, round_id)[0]}
    reference = next(e for e in round_endpoints(store, round_id) if e.kind == "reference")
    # rung target -> the longest prompt of its cases: as the reference counts it (chat
    # template included: what `context_limit` counts) and its messages' text alone (what
    # `truncate_context` keeps the last N tokens of)
    longest: dict[int, int] = {}
    longest_text: dict[int, int] = {}
    for o in load_observations(store, round_id, [reference.provider_id]):
        target = o.case["metadata"]["target_tokens"]
        longest[target] = max(longest.get(target, 0), o.prompt_tokens or 0)
        longest_text[target] = max(longest_text.get(target, 0), text_tokens(o.case["messages"]))
    store.engine.dispose()
    rows = []
    for name, planted in meta["planted"].items():
        window = findings[name].context_window
        assert window is not None, f"start {seed}: {name} has no ladder"
        lengths = [r.length for r in window.rungs]
        counted = longest_text if planted["fault"] == "truncate_context" else longest
        fits = [t for t in sorted(longest) if planted["fault"] == "honest"
                or counted[t] <= planted["strength"]]  # fmt: skip
        truth = len(fits) - 1
        got = rung_of(window.effective, lengths)  # a stopped climb's rungs are the lowest
        rows.append(
            {"seed": seed, "provider": name, "fault": planted["fault"],
             "planted": planted.get("strength"), "usage_as_sent": planted.get("usage_as_sent"),
             "noise": planted["noise"], "truth_rung": truth, "reported_rung": got,
             "error": got - truth, "effective": window.effective, "reason": window.reason,
             "verdict": findings[name].verdict, "breaks_at": window.breaks_at,
             "diagnoses": [d.kind for d in findings[name].diagnoses],
             "requests": window.requests,
             "tokens": window.tokens}
        )  # fmt: skip
    return rows


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for kind in sorted({r["fault"] for r in rows}):
        of = [r for r in rows if r["fault"] == kind]
        errors = [r["error"] for r in of]
        out[kind] = {
            "members": len(of),
            "exact": round(sum(e == 0 for e in errors) / len(of), 3),
            "within_one_rung": round(sum(abs(e) <= 1 for e in errors) / len(of), 3),
            "mean_abs_error_rungs": round(statistics.fmean(abs(e) for e in errors), 3),
            "errors": dict(sorted((str(e), errors.count(e)) for e in set(errors))),
            "deviant": round(sum(r["verdict"] == "deviant" for r in of) / len(of), 3),
            # members whose window broke on the ladder, and those of them deviant with a
            # context_truncation diagnosis (the finding an ops team acts on)
            "broke": len(broke := [r for r in of if r.get("breaks_at") is not None]),
            "broke_diagnosed": sum(
                r["verdict"] == "deviant" and "context_truncation" in r.get("diagnoses", [])
                for r in broke
            ),
            "requests_mean": round(statistics.fmean(r["requests"] for r in of), 1),
            "tokens_mean": round(statistics.fmean(r["tokens"] for r in of)),
        }
    return out


def judge(work: Path, seeds: list[int]) -> None:
    """Re-judge every recorded start of `seeds` (under `work` or in `bench/recorded/`) with
    today's detector and write `RESULTS`; a start not recorded is left out."""
    seeds = [s for s in seeds if restore(s, work, KIND)]
    rows = [row for s in seeds for row in judge_start(s, work)]
    seconds = [json.loads((work / f"ladder-{s}.json").read_text())["seconds"] for s in seeds]
    result = {
        "benchmark": "ladder_accuracy",
        "machine": machine(),
        "settings": {
            "window": WINDOW,
            "fleet_n_ctx": FLEET_N_CTX,
            "honest": HONEST,
            "cuts": CUTS,
            "limits": 1,
            "ranges": RANGES,
            "suite": "probes/ladder.yaml as shipped (climbing)",
        },
        "starts": seeds,
        "start_seconds": {"median": statistics.median(seconds), "max": max(seconds)}
        if seconds
        else None,
        "by_fault": summarise(rows) if rows else {},
        "members": rows,
    }
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["by_fault"], indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("--seeds", required=True)
    rec.add_argument("--base-port", type=int, default=BASE_PORT)
    rec.add_argument("--work", type=Path, default=DEFAULT_WORK)
    jud = sub.add_parser("judge")
    jud.add_argument("--seeds", required=True)
    jud.add_argument("--work", type=Path, default=DEFAULT_WORK)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.command == "record":
        for seed in parse_seeds(args.seeds):
            asyncio.run(record(seed, args.work, args.base_port))
        return
    judge(args.work, parse_seeds(args.seeds))


if __name__ == "__main__":
    main()
