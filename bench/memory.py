"""Memory: peak resident memory of a round against the instant stub provider (SQLite), for
rounds of 1,000, 3,000 and 10,000 requests, each in a fresh child process. Does the peak
stay flat in the number of requests (samples streamed to the database, nothing kept)?

Per size: the child's resident memory before the round (imports done, stub up, database
created), its peak (VmHWM) when the runner has stored the last sample (the send-and-store
phase) and at the end of `run_round_async` (findings included, computed from the database),
the peak of the round's writer process, and the samples counted in the database. Writes
bench/results/memory.json.

    nice -n 10 .venv/bin/python bench/memory.py [--sizes 1000,3000,10000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import (
    RESULTS,
    audited_round,
    config_for,
    machine,
    open_store,
    proc_status_kib,
    quiet_logs,
    write_suite,
)
from stub import running_stub

FLAT_MARGIN = 0.10
"""Flat: the largest round's peak within 10% of the smallest's."""


def watch_children(stop: threading.Event, peak: list[int]) -> None:
    """The largest VmHWM of this process's children (the round's writer process) until
    `stop`, read every 20 ms (ru_maxrss would count the parent's pages before the exec)."""
    children = Path(f"/proc/self/task/{os.getpid()}/children")
    while not stop.wait(0.02):
        for pid in children.read_text().split():
            try:
                if b"auditor.storage.writer" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                    continue  # not exec'd yet: the pages are still this process's
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:  # ended meanwhile
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    peak[0] = max(peak[0], int(line.split()[1]))


def child(requests: int, base_url: str, concurrency: int) -> dict[str, Any]:
    """One round in this (fresh) process; its memory figures."""
    quiet_logs()
    with tempfile.TemporaryDirectory(prefix="auditor-memory-") as tmp:
        workdir = Path(tmp)
        probes = workdir / "probes"
        write_suite(probes, requests)
        url = f"sqlite:///{workdir / 'memory.db'}"
        config = config_for(url, probes, base_url, concurrency=concurrency)
        store = open_store(url)
        before_kib = proc_status_kib("VmRSS")
        hwm_before_kib = proc_status_kib("VmHWM")
        writer_peak = [0]
        stop = threading.Event()
        watcher = threading.Thread(target=watch_children, args=(stop, writer_peak))
        watcher.start()
        t0 = time.perf_counter()
        run = asyncio.run(audited_round(config, store))
        wall = time.perf_counter() - t0
        stop.set()
        watcher.join()
        store.engine.dispose()
        return {
            "requests": requests,
            "rss_before_kib": before_kib,
            "hwm_before_kib": hwm_before_kib,
            "hwm_send_phase_kib": store.hwm_kib_at_finish,
            "hwm_end_kib": proc_status_kib("VmHWM"),
            "rss_end_kib": proc_status_kib("VmRSS"),
            "writer_hwm_kib": writer_peak[0],
            "wall_s": wall,
            **{
                k: run[k] for k in ("status", "sent", "samples", "ok", "send_phase_s", "findings_s")
            },
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,3000,10000")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--output", type=Path, default=RESULTS / "memory.json")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.base_url, args.concurrency)))
        return
    started = time.time()
    info = machine()
    sizes = [int(x) for x in args.sizes.split(",")]
    runs = []
    with running_stub() as stub:
        for n in sizes:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    str(n),
                    "--base-url",
                    stub.base_url,
                    "--concurrency",
                    str(args.concurrency),
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            run = json.loads(out.stdout.strip().splitlines()[-1])
            runs.append(run)
            print(
                f"{n:6d} requests: before {run['rss_before_kib'] / 1024:6.1f} MiB, peak send "
                f"phase {run['hwm_send_phase_kib'] / 1024:6.1f} MiB, peak with findings "
                f"{run['hwm_end_kib'] / 1024:6.1f} MiB, writer process peak "
                f"{run['writer_hwm_kib'] / 1024:6.1f} MiB, {run['samples']} samples stored, "
                f"{run['wall_s']:.1f} s",
                flush=True,
            )
    small, large = runs[0], runs[-1]
    extra = large["requests"] - small["requests"]

    def growth(key: str) -> dict[str, float]:
        delta = (large[key] - small[key]) * 1024
        return {
            "bytes": delta,
            "bytes_per_request": delta / extra,
            "ratio": large[key] / small[key],
            "flat": large[key] <= small[key] * (1 + FLAT_MARGIN),
        }

    out_json = {
        "benchmark": "memory",
        "machine": info,
        "parameters": {
            "sizes": sizes,
            "concurrency": args.concurrency,
            "database": "sqlite",
            "stub_latency_ms": 0,
            "flat_margin": FLAT_MARGIN,
        },
        "elapsed_s": time.time() - started,
        "runs": runs,
        "growth_send_phase": growth("hwm_send_phase_kib"),
        "growth_with_findings": growth("hwm_end_kib"),
        "growth_writer_process": growth("writer_hwm_kib"),
        "every_sample_durable": all(
            r["samples"] == r["sent"] == r["ok"] == r["requests"] for r in runs
        ),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out_json, indent=2) + "\n")
    for key in ("growth_send_phase", "growth_with_findings", "growth_writer_process"):
        g = out_json[key]
        print(
            f"{key}: {g['bytes'] / 2**20:.1f} MiB from {small['requests']} to "
            f"{large['requests']} requests, {g['bytes_per_request']:.0f} B/request, "
            f"ratio {g['ratio']:.3f}, flat {g['flat']}"
        )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
