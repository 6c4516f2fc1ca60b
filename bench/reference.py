"""Reference engine overhead: `LlamaCppEngine.complete` against a bare
`llama_cpp.Llama.create_chat_completion` loop on the same prompts, in the same run, the same
weights loaded alike, runs interleaved. Writes bench/results/reference.json.

The prompts are the core suite's, answered greedily. The bare loop keeps llama-cpp-python's
own prompt reuse (the longest cached prefix, which changes the logits: see
`auditor.providers.llama_prefix`); the engine reuses only an exact prompt, so on these
distinct prompts it evaluates each afresh. `bare_with_reset` shows what evaluating every
prompt afresh costs the bare loop.

    .venv/bin/python bench/reference.py [--repeats 3] [--max-tokens 48]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
from pathlib import Path

from llama_cpp import Llama

from auditor.config import LlamaCppReference
from auditor.probes import expand_requests, load_suite
from auditor.providers.llama_cpp import LlamaCppEngine
from auditor.records import CompletionRequest

ROOT = Path(__file__).resolve().parents[1]


def greedy_requests(max_tokens: int) -> list[CompletionRequest]:
    """The core suite's single-turn prompts, greedy, with one max_tokens for all."""
    suite = load_suite("core", ROOT / "probes")
    requests = [r for r in expand_requests(suite) if r.sample_index == 0]
    return [
        r.model_copy(
            update={
                "params": r.params.model_copy(
                    update={
                        "temperature": 0.0,
                        "max_tokens": max_tokens,
                        "logprobs": None,
                        "top_logprobs": None,
                    }
                )
            }
        )
        for r in requests
        if sum(len(m.content or "") for m in r.messages) < 2000
    ]


def bare_loop(
    llm: Llama, requests: list[CompletionRequest], reset: bool = False
) -> tuple[float, int]:
    tokens, start = 0, time.perf_counter()
    for r in requests:
        if reset:
            llm.reset()
        out = llm.create_chat_completion(
            messages=[m.model_dump(exclude_none=True) for m in r.messages],
            temperature=0.0,
            top_p=1.0,
            top_k=0,
            min_p=0.0,
            repeat_penalty=1.0,
            max_tokens=r.params.max_tokens,
        )
        tokens += out["usage"]["completion_tokens"]
    return time.perf_counter() - start, tokens


def auditor_path(engine: LlamaCppEngine, requests: list[CompletionRequest]) -> tuple[float, int]:
    async def run() -> int:
        total = 0
        for r in requests:
            response = await engine.complete(r)
            assert response.ok, response.error_message
            total += response.usage.completion_tokens or 0
        return total

    start = time.perf_counter()
    tokens = asyncio.run(run())
    return time.perf_counter() - start, tokens


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args()
    engine = LlamaCppEngine(LlamaCppReference(engine="llama_cpp", n_ctx=2048))
    threads = os.cpu_count() or 1
    plain = Llama(
        model_path=str(engine.path),
        n_ctx=2048,
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
    )
    requests = greedy_requests(args.max_tokens)
    engine.worker.submit(bare_loop, plain, requests[:3]).result()  # warm up
    runs: dict[str, list[dict[str, float]]] = {"bare": [], "bare_with_reset": [], "auditor": []}

    def with_reset(llm: Llama, requests: list[CompletionRequest]) -> tuple[float, int]:
        return bare_loop(llm, requests, reset=True)

    def on_engine_thread(fn):  # type: ignore[no-untyped-def]
        """The bare loops run on the engine's own thread: llama.cpp's OpenMP keeps a thread
        team per calling thread, and two teams spinning on 2 cores would slow both."""
        return lambda _engine, requests: engine.worker.submit(fn, plain, requests).result()

    for i in range(args.repeats):
        order = [
            ("bare", on_engine_thread(bare_loop)),
            ("auditor", auditor_path),
            ("bare_with_reset", on_engine_thread(with_reset)),
        ]
        for name, fn in order if i % 2 == 0 else reversed(order):
            seconds, tokens = fn(engine, requests)
            runs[name].append(
                {"seconds": seconds, "completion_tokens": tokens, "tokens_per_s": tokens / seconds}
            )
    bare = statistics.median(r["tokens_per_s"] for r in runs["bare"])
    ours = statistics.median(r["tokens_per_s"] for r in runs["auditor"])
    reset_rate = statistics.median(r["tokens_per_s"] for r in runs["bare_with_reset"])
    result = {
        "benchmark": "reference",
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "processor": platform.processor(),
        },
        "model": str(engine.path.name),
        "requests_per_run": len(requests),
        "max_tokens": args.max_tokens,
        "runs": runs,
        "bare_tokens_per_s": round(bare, 2),
        "auditor_tokens_per_s": round(ours, 2),
        "bare_with_reset_tokens_per_s": round(reset_rate, 2),
        "overhead_pct": round(100 * (bare - ours) / bare, 2),
    }
    out = ROOT / "bench" / "results" / "reference.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    main()
