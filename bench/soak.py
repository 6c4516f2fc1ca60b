"""Soak: the real daemon for `--minutes` at a `--every` schedule against fast local stub
providers (the model-free echo fleet) with a tiny suite, and a webhook receiver. Samples the
daemon's resident memory and open file descriptors every `--sample-s` seconds and writes
bench/results/soak.json: do they grow?

    .venv/bin/python bench/soak.py [--minutes 10] [--every 5s]

The growth figures compare the mean of the last fifth of the samples with the mean of the
second fifth (the first is warm-up: imports, first connections, caches filling).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from auditor_fleet import FleetMember, FleetSpec
from auditor_fleet.process import running_fleet

ROOT = Path(__file__).resolve().parents[1]
AUDITOR = str(Path(sys.executable).parent / "auditor")
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SUITE = {
    "suite": "tiny",
    "defaults": {"params": {"temperature": 0, "max_tokens": 16}},
    "cases": [
        {"id": "add", "prompt": "What is 2 + 2? Answer with one number.", "expect": {"number": 4}},
        {"id": "capital", "prompt": "Capital of France? One word."},
        {"id": "poem", "prompt": "A line about the sea.", "params": {"temperature": 1}},
    ],
}


def receiver() -> tuple[ThreadingHTTPServer, list[str]]:
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            return None

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            seen.append(self.headers.get("webhook-id", ""))
            self.send_response(204)
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def growth(values: list[float]) -> dict[str, float]:
    fifth = max(1, len(values) // 5)
    early = values[fifth : 2 * fifth] or values[:1]
    late = values[-fifth:]
    a, b = sum(early) / len(early), sum(late) / len(late)
    return {"early_mean": a, "late_mean": b, "growth_ratio": b / a if a else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--every", default="5s")
    parser.add_argument("--sample-s", type=float, default=10)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="auditor-soak-"))
    (work / "probes").mkdir()
    (work / "probes" / "tiny.yaml").write_text(yaml.safe_dump(SUITE))
    hooks, seen = receiver()
    spec = FleetSpec(
        members=[
            FleetMember(name="ref", port=0),
            FleetMember(name="honest", port=0),
            FleetMember(name="flaky", port=0, fault="flaky", strength=0.5),
            FleetMember(name="broken", port=0, fault="http_500"),
        ]
    )
    with running_fleet(spec) as fleet:
        providers = [
            {
                "name": n,
                "base_url": fleet.base_url(n),
                "model": "smollm2-135m-instruct",
                "requests_per_second": 100,
                "max_concurrency": 4,
                "timeout_s": 10,
                "retry": {"max_attempts": 2, "backoff_base_s": 0.01, "backoff_max_s": 0.05},
            }
            for n in ("honest", "flaky", "broken")
        ]
        config = {
            "database": f"sqlite:///{work / 'soak.db'}",
            "reference": {
                "engine": "endpoint",
                "base_url": fleet.base_url("ref"),
                "model": "smollm2-135m-instruct",
            },
            "suites": ["tiny"],
            "probes_dir": "probes",
            "models": [{"name": "smollm2-135m-instruct", "providers": providers}],
            "schedule": [{"suite": "tiny", "every": args.every}],
            "server": {"host": "127.0.0.1", "port": 0},
            "alerts": {
                "sinks": [
                    {
                        "name": "hooks",
                        "min_severity": "info",
                        "url": f"http://127.0.0.1:{hooks.server_port}/h",
                        "secret_env": "SOAK_HOOK_SECRET",
                    }
                ]
            },
        }
        (work / "providers.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        env = {**os.environ, "SOAK_HOOK_SECRET": SECRET, "AUDITOR_LOG_LEVEL": "warning"}
        with (work / "daemon.log").open("w") as log:
            proc = subprocess.Popen(
                [AUDITOR, "daemon", "-c", "providers.yaml"],
                cwd=work,
                env=env,
                stderr=log,
                stdout=subprocess.DEVNULL,
            )
            samples: list[dict[str, float]] = []
            t0 = time.monotonic()
            try:
                while time.monotonic() - t0 < args.minutes * 60:
                    time.sleep(args.sample_s)
                    if proc.poll() is not None:
                        raise SystemExit(f"the daemon exited early ({proc.returncode})")
                    samples.append(
                        {
                            "t_s": round(time.monotonic() - t0, 1),
                            "rss_kib": rss_kib(proc.pid),
                            "open_fds": open_fds(proc.pid),
                        }
                    )
                    print(json.dumps(samples[-1]), flush=True)
            finally:
                proc.send_signal(signal.SIGTERM)
                exit_code = proc.wait(timeout=30)
    hooks.shutdown()
    with sqlite3.connect(work / "soak.db") as db:
        by_status = dict(db.execute("SELECT status, count(*) FROM rounds GROUP BY status"))
        samples_stored = db.execute("SELECT count(*) FROM samples").fetchone()[0]
        incidents = db.execute("SELECT count(*) FROM incidents").fetchone()[0]
    result = {
        "benchmark": "soak",
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "minutes": args.minutes,
        "schedule_every": args.every,
        "providers": [p["name"] for p in providers],
        "rounds_by_status": by_status,
        "samples_stored": samples_stored,
        "incidents": incidents,
        "webhooks_received": len(seen),
        "sigterm_exit_code": exit_code,
        "rss_kib": growth([s["rss_kib"] for s in samples]),
        "open_fds": growth([s["open_fds"] for s in samples]),
        "samples": samples,
    }
    out = ROOT / "bench" / "results" / "soak.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
