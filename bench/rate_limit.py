"""Rate-limit fidelity: real rounds against the instant stub provider (`bench/stub.py`, which
logs the arrival time of every request) for `--seconds` each, under

1. a request limit: `requests_per_second` R with `burst` B (tokens unlimited);
2. a token limit: `tokens_per_minute` T that binds (the request limit far above it).

For each: the most requests (tokens) that arrived in any sliding 1-second window, against
the limit plus the burst, and the achieved rate over the run, against the limit. The round
is stopped (as on SIGTERM) once the time is up; every request the stub answered must be in
the database. Writes bench/results/rate_limit.json.

    nice -n 10 .venv/bin/python bench/rate_limit.py [--seconds 60] [--rps 20] [--burst 5]
        [--tpm 6000]

How the limits work (auditor/rounds/limits.py): aiolimiter leaky buckets. Requests: capacity B,
drained at R/s, so any 1-s window holds at most R + B requests. Tokens: capacity
`tokens_burst` (default T/10), drained at T/60 per second; each request reserves its
estimated prompt plus max_tokens before it is sent, and the bucket is corrected to the usage
the provider reports once it answers. After an idle spell the bucket is empty, so up to the
burst may go at once: any 1-s window holds at most T/60 + the burst, and the first minute
(the worst 60-s window) at most T + the burst (1.1 T by default).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import (
    RESULTS,
    audited_round,
    config_for,
    fresh_database,
    machine,
    open_store,
    quiet_logs,
    write_suite,
)
from stub import RunningStub, running_stub

from auditor.config import ProviderConfig
from auditor.probes import expand_requests, load_suite
from auditor.rounds.limits import reservation, token_bucket


def max_in_window(times: list[float], width: float = 1.0) -> tuple[int, float]:
    """The most arrivals in any half-open window [t, t + width), and where it starts (the
    maximum is reached by a window starting at an arrival)."""
    best, at = 0, 0.0
    for i, t in enumerate(times):
        n = bisect.bisect_left(times, t + width, lo=i) - i
        if n > best:
            best, at = n, t
    return best, at


def per_second(times: list[float], start: float, seconds: int) -> list[int]:
    counts = [0] * seconds
    for t in times:
        k = int(t - start)
        if 0 <= k < seconds:
            counts[k] += 1
    return counts


async def timed_round(config: Any, store: Any, seconds: float) -> dict[str, Any]:
    """A round stopped after `seconds` (plus a second: the analysis window starts at the
    first arrival), in-flight requests finished and stored."""
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(seconds + 1.0, stop.set)
    return await audited_round(config, store, stop=stop)


def run_case(
    name: str,
    stub: RunningStub,
    workdir: Path,
    seconds: int,
    planned: int,
    provider: dict[str, Any],
) -> tuple[dict[str, Any], list[float]]:
    probes = workdir / f"probes-{name}"
    write_suite(probes, planned)
    with fresh_database("sqlite", workdir) as url:
        config = config_for(url, probes, stub.base_url, **provider)
        store = open_store(url)
        stub.reset()
        run = asyncio.run(timed_round(config, store, seconds))
        stats = stub.stats()
        store.engine.dispose()
    arrivals = sorted(stats["arrivals"])
    run["stub_arrivals"] = len(arrivals)
    run["every_answer_stored"] = run["samples"] == len(arrivals) == run["ok"]
    run["planned"] = planned
    return run, arrivals


def request_limit(
    stub: RunningStub, workdir: Path, seconds: int, rps: float, burst: int
) -> dict[str, Any]:
    planned = int(rps * (seconds + 5) + burst)
    provider = {"concurrency": 16, "rps": rps, "burst": burst, "tpm": None}
    run, arrivals = run_case("requests", stub, workdir, seconds, planned, provider)
    start = arrivals[0]
    window = [t for t in arrivals if t < start + seconds]
    most, at = max_in_window(window)
    achieved = len(window) / seconds
    bound = rps + burst
    return {
        "limit": {"requests_per_second": rps, "burst": burst, "max_concurrency": 16},
        "seconds": seconds,
        "requests_in_window": len(window),
        "achieved_rps": achieved,
        "achieved_share_of_limit": achieved / rps,
        "max_requests_in_any_1s_window": most,
        "max_window_starts_at_s": at - start,
        "allowed_in_1s_window": bound,
        "within_limit_plus_burst": most <= bound,
        "achieved_at_least_95_percent": achieved >= 0.95 * rps,
        "per_second_counts": per_second(window, start, seconds),
        "round": run,
        "arrivals_s": [round(t - start, 6) for t in arrivals],
    }


def token_limit(stub: RunningStub, workdir: Path, seconds: int, tpm: int) -> dict[str, Any]:
    usage = stub.stats()
    per_request = usage["prompt_tokens"] + usage["completion_tokens"]
    bucket = token_bucket(
        ProviderConfig(
            name="stub", base_url="http://127.0.0.1:1/v1", model="m", tokens_per_minute=tpm
        )
    )
    assert bucket is not None
    capacity = int(bucket.max_rate)  # the default tokens_burst
    rate = tpm / 60
    planned = int((capacity + rate * (seconds + 5)) / per_request) + 50
    provider = {"concurrency": 16, "rps": 1000.0, "burst": 16, "tpm": tpm}
    run, arrivals = run_case("tokens", stub, workdir, seconds, planned, provider)
    probes = workdir / "probes-tokens"
    reserved = reservation(expand_requests(load_suite("bench", probes))[0], {})
    start = arrivals[0]
    window = [t for t in arrivals if t < start + seconds]
    most, at = max_in_window(window)
    # After the first second (the initial burst of up to one bucket), the steady state.
    settled = [t for t in window if t >= start + 1.0]
    most_settled, at_settled = max_in_window(settled)
    at_settled -= start
    steady = [t for t in window if t >= start + 10.0]
    steady_rate = len(steady) * per_request / (seconds - 10)
    first_second = sum(1 for t in window if t < start + 1.0) * per_request
    return {
        "limit": {"tokens_per_minute": tpm, "requests_per_second": 1000.0, "burst": 16},
        "seconds": seconds,
        "tokens_per_request": {"reserved": reserved, "reported_usage": per_request},
        "bucket_capacity_tokens": capacity,
        "requests_in_window": len(window),
        "tokens_in_window": len(window) * per_request,
        "tokens_in_window_over_tpm": len(window) * per_request / tpm * 60 / seconds,
        "tokens_in_first_60s": sum(1 for t in window if t < start + 60.0) * per_request,
        "allowed_in_first_60s": tpm + capacity,
        "tokens_in_first_second": first_second,
        "max_tokens_in_any_1s_window": most * per_request,
        "max_window_starts_at_s": at - start,
        "allowed_in_1s_window": rate + capacity,
        "within_limit_plus_burst": most * per_request <= rate + capacity,
        "max_tokens_in_any_1s_window_after_the_first_second": most_settled * per_request,
        "that_window_starts_at_s": at_settled,
        "allowed_in_1s_window_after_the_burst": rate + reserved,
        "within_rate_after_the_burst": most_settled * per_request <= rate + reserved,
        "steady_tokens_per_s_from_10s": steady_rate,
        "steady_share_of_limit": steady_rate / rate,
        "steady_at_least_95_percent": steady_rate >= 0.95 * rate,
        "per_second_tokens": [c * per_request for c in per_second(window, start, seconds)],
        "round": run,
        "arrivals_s": [round(t - start, 6) for t in arrivals],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--rps", type=float, default=20.0)
    parser.add_argument("--burst", type=int, default=5)
    parser.add_argument("--tpm", type=int, default=6000)
    parser.add_argument("--output", type=Path, default=RESULTS / "rate_limit.json")
    args = parser.parse_args()
    quiet_logs()
    started = time.time()
    info = machine()
    with tempfile.TemporaryDirectory(prefix="auditor-ratelimit-") as tmp:
        workdir = Path(tmp)
        with running_stub() as stub:
            req = request_limit(stub, workdir, args.seconds, args.rps, args.burst)
            print(
                f"requests: R={args.rps:g}/s burst {args.burst}: achieved "
                f"{req['achieved_rps']:.2f}/s ({req['achieved_share_of_limit']:.1%}), max "
                f"{req['max_requests_in_any_1s_window']} in a 1-s window (allowed "
                f"{req['allowed_in_1s_window']:g}), stored all: "
                f"{req['round']['every_answer_stored']}",
                flush=True,
            )
            tok = token_limit(stub, workdir, args.seconds, args.tpm)
            print(
                f"tokens: T={args.tpm}/min: max {tok['max_tokens_in_any_1s_window']} in a 1-s "
                f"window (allowed {tok['allowed_in_1s_window']:.0f}: the bucket "
                f"{tok['bucket_capacity_tokens']} + a second's rate), after the first second "
                f"max "
                f"{tok['max_tokens_in_any_1s_window_after_the_first_second']} in a 1-s window "
                f"(allowed {tok['allowed_in_1s_window_after_the_burst']:.0f}); steady "
                f"{tok['steady_tokens_per_s_from_10s']:.1f} tokens/s "
                f"({tok['steady_share_of_limit']:.1%} of {args.tpm / 60:.1f}); "
                f"{tok['tokens_in_window']} tokens in {args.seconds} s; stored all: "
                f"{tok['round']['every_answer_stored']}",
                flush=True,
            )
    out = {
        "benchmark": "rate_limit",
        "machine": info,
        "parameters": vars(args) | {"output": str(args.output)},
        "elapsed_s": time.time() - started,
        "request_limit": req,
        "token_limit": tok,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
