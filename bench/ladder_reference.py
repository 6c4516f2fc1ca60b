"""The reference's own pass rate on the context ladder, per task and rung, and what a ladder
costs it. Writes bench/results/ladder_reference.json.

A ladder task tells something at a rung only where the reference passes it there (each
provider is graded against the reference's pass rate at the same length): this measures, for
the embedded reference (the packaged SmolLM2-135M-Instruct GGUF, greedy, one thread), the
`ladder` suite's four tasks at its six rungs, over several instances of the ladder (the
generator's `seed`), at each window asked for. Each case is answered once (the reference is
greedy: its samples of one prompt are the same answer, and the cache serves them) and scored
by the case's `expect`, as a round scores it. Times are wall seconds of `LlamaCppEngine.
complete` with `n_ctx` just above the window, prompt tokens as the engine counts them.

    .venv/bin/python bench/ladder_reference.py --window 2048 --seeds 0-2
    .venv/bin/python bench/ladder_reference.py --window 8192 --seeds 0   # the full window

Each (window, seed) is kept in the results file as it is measured and reused on a later run
(`--fresh` measures it again), with what the engine reused of its prompts (`prompt_reuse`:
prompts, those reused whole, prompt tokens reused; runs from before 2026-12-05 have none).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from auditor.config import LlamaCppReference, ModelProfile
from auditor.probes import load_suite
from auditor.probes.ladder import LadderParams
from auditor.providers.llama_cpp import LlamaCppEngine
from auditor.records import CompletionRequest, ProbeCase
from auditor.scorers.expect import ExpectScorer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from overhead import machine  # noqa: E402  (bench/overhead.py, beside this file)

RESULTS = ROOT / "bench" / "results" / "ladder_reference.json"
TEMPLATE_ROOM = 256  # n_ctx above the window: the chat template and the answer


def ladder_cases(
    window: int, seed: int, scratch: Path, params: dict[str, Any] | None = None
) -> list[ProbeCase]:
    """The shipped `ladder` suite with the generator's `seed` (and `params`, e.g. fewer
    `hops` or a subset of `tasks`), expanded at `window`."""
    data = yaml.safe_load((ROOT / "probes" / "ladder.yaml").read_text())
    for case in data["cases"]:
        case["generator"].setdefault("params", {}).update({**(params or {}), "seed": seed})
    scratch.mkdir(parents=True, exist_ok=True)
    (scratch / "ladder.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    suite = load_suite("ladder", scratch)
    cases, skipped = suite.cases_for("m", ModelProfile(context_window=window))
    if skipped:
        raise SystemExit(f"window {window}: cases skipped: {skipped}")
    return cases


def generator_params(params: dict[str, Any]) -> dict[str, Any]:
    """What the ladder is generated with, but the seed: the shipped suite's params, the
    generator's defaults for the sizes, and `params` over them (a result's name)."""
    data = yaml.safe_load((ROOT / "probes" / "ladder.yaml").read_text())
    shipped = data["cases"][0]["generator"].get("params", {})
    sizes = LadderParams(window=128).model_dump(
        include={"tasks", "keys", "hops", "words", "depths"}
    )
    merged = {**sizes, "instances": 1, **shipped, **params}
    merged.pop("seed", None)
    return merged


async def measure(engine: LlamaCppEngine, cases: list[ProbeCase]) -> list[dict[str, Any]]:
    scorer = ExpectScorer()
    rows = []
    for case in cases:
        started = time.perf_counter()
        response = await engine.complete(CompletionRequest.from_case(case, 0))
        seconds = time.perf_counter() - started
        scores = {s.metric: s.value for s in scorer.score(case, response)} if response.ok else {}
        rows.append(
            {
                "case": case.id,
                "task": case.metadata["task"],
                "rung": case.metadata["rung"],
                "target_tokens": case.metadata["target_tokens"],
                "prompt_tokens": response.usage.prompt_tokens,
                "ok": response.ok,
                "error": None if response.ok else response.error_message,
                "passed": bool(scores.get("expect_pass", 0.0) >= 0.5),
                "answer": (response.text or "")[:80],
                "seconds": round(seconds, 2),
            }
        )
        print(
            f"{case.id}: {rows[-1]['prompt_tokens']} tokens, "
            f"{'pass' if rows[-1]['passed'] else 'FAIL'}, {seconds:.1f} s",
            flush=True,
        )
    return rows


def summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per window: pass rate per task and rung over the seeds, and the cost of one ladder."""
    by_window: dict[str, Any] = {}
    for key, rows in sorted(runs.items()):
        window, _, rest = key.partition("/")
        seed, _, params = rest.partition("/")
        name = f"{window}/{params}"
        entry = by_window.setdefault(name, {"seeds": [], "rows": []})
        entry["seeds"].append(int(seed))
        entry["rows"] += rows
    out = {}
    for window, entry in by_window.items():
        rows = entry["rows"]
        table: dict[str, dict[str, dict[str, Any]]] = {}
        for r in rows:
            cell = table.setdefault(r["task"], {}).setdefault(
                str(r["target_tokens"]), {"passed": 0, "tried": 0, "prompt_tokens": []}
            )
            cell["tried"] += 1
            cell["passed"] += r["passed"]
            cell["prompt_tokens"].append(r["prompt_tokens"])
        for cells in table.values():
            for cell in cells.values():
                tokens = [t for t in cell.pop("prompt_tokens") if t is not None]
                cell["rate"] = round(cell["passed"] / cell["tried"], 3)
                cell["prompt_tokens_mean"] = round(sum(tokens) / len(tokens)) if tokens else None
        seconds = sum(r["seconds"] for r in rows)
        prompt = sum(r["prompt_tokens"] or 0 for r in rows)
        n = len(entry["seeds"])
        out[window] = {
            "seeds": sorted(entry["seeds"]),
            "pass_rate": table,
            "ladder_seconds": round(seconds / n, 1),
            "ladder_prompt_tokens": round(prompt / n),
            "prompt_tokens_per_s": round(prompt / seconds, 1) if seconds else None,
            "errors": sum(not r["ok"] for r in rows),
        }
    return out


def prompt_reuse(engine: LlamaCppEngine) -> dict[str, int]:
    """The engine's prompts so far and what it reused of them (`auditor.providers.
    llama_prefix`): whole prompts, and prompt tokens in all."""
    llm = engine.llm
    return {"prompts": llm.prompts, "whole": llm.prefix_hits, "tokens": llm.reused_tokens}


def parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        seeds += range(int(low), int(high or low) + 1)
    return seeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=int, default=2048)
    parser.add_argument("--seeds", default="0-2")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument(
        "--params", default="", help="generator params as JSON, e.g. '{\"hops\": 1}'"
    )
    args = parser.parse_args()
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    runs: dict[str, list[dict[str, Any]]] = previous.get("runs", {})
    reuse: dict[str, dict[str, int]] = previous.get("prompt_reuse", {})
    engine = LlamaCppEngine(
        LlamaCppReference(
            engine="llama_cpp", n_ctx=args.window + TEMPLATE_ROOM, n_threads=args.threads
        )
    )
    scratch = ROOT / "bench" / ".ladder-scratch"
    for seed in parse_seeds(args.seeds):
        params = json.loads(args.params) if args.params else {}
        key = f"{args.window}/{seed}/{json.dumps(generator_params(params), sort_keys=True)}"
        if key in runs and not args.fresh:
            print(f"{key}: measured already", flush=True)
            continue
        cases = ladder_cases(args.window, seed, scratch / str(seed), params)
        before = prompt_reuse(engine)
        runs[key] = asyncio.run(measure(engine, cases))
        reuse[key] = {k: v - before[k] for k, v in prompt_reuse(engine).items()}
        result = {
            "benchmark": "ladder_reference",
            "machine": machine(),
            "model": "SmolLM2-135M-Instruct (packaged GGUF)",
            "threads": args.threads,
            "summary": summarise(runs),
            "prompt_reuse": reuse,
            "runs": runs,
        }
        RESULTS.write_text(json.dumps(result, indent=1) + "\n")
        print(f"{key}: measured", flush=True)


if __name__ == "__main__":
    main()
