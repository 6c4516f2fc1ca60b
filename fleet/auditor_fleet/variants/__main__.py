"""`python -m auditor_fleet.variants`: how far the greedy answers of each variant drift from
those of the packaged weights (docs/fleet.md, "Measured drift of each variant").

The answers come from the fleet's `LlamaBackend`, which builds its members' weights with
`auditor_fleet.variants`: the measurement lives here, so that the weights module needs
nothing of the backend that uses it (no import cycle).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from auditor.probes import load_suite
from auditor.providers.llama_cpp import packaged_model_path
from auditor_fleet.backends import ChatRequest
from auditor_fleet.llama_backend import LlamaBackend
from auditor_fleet.variants import DEFAULT_PERTURB_SCALE, perturb, requantize, tensor_types


def greedy_answers(
    weights: Path, requests: list[dict[str, object]], noise: float = 0.0, seed: int = 0
) -> list[str]:
    """The answers of `weights` to chat bodies `requests` at temperature 0, with `noise`."""
    backend = LlamaBackend(weights)
    return [
        backend.run(
            ChatRequest.model_validate({**body, "temperature": 0}), weights, noise, seed + i
        ).text
        for i, body in enumerate(requests)
    ]


def agreement(answers: list[str], reference: list[str]) -> float:
    """Share of answers equal to the reference's, text for text."""
    pairs = list(zip(answers, reference, strict=True))
    return sum(a == b for a, b in pairs) / len(pairs) if pairs else 1.0


def suite_requests(
    suite: str = "demo", probes_dir: Path = Path("probes")
) -> list[dict[str, object]]:
    """One chat body per case of a probe suite (its own params, temperature set to 0 later)."""
    return [
        {
            "messages": [m.model_dump(exclude_none=True) for m in case.messages],
            **case.params.model_dump(exclude_none=True, include={"max_tokens", "stop"}),
        }
        for case in load_suite(suite, probes_dir).cases
    ]


def main() -> None:
    """Print how far each fleet variant's greedy answers drift from the packaged weights."""
    parser = argparse.ArgumentParser(prog="python -m auditor_fleet.variants")
    parser.add_argument("--suite", default="demo")
    parser.add_argument("--probes-dir", type=Path, default=Path("probes"))
    parser.add_argument("--noise", type=float, nargs="*", default=[0.02, 0.05, 0.1])
    parser.add_argument("--scale", type=float, nargs="*", default=[DEFAULT_PERTURB_SCALE])
    parser.add_argument("--qtype", nargs="*", default=["Q2_K", "Q4_0"])
    parser.add_argument("--seeds", type=int, default=3, help="noise seeds per honest row")
    args = parser.parse_args()
    src = packaged_model_path()
    requests = suite_requests(args.suite, args.probes_dir)
    rows: list[tuple[str, Path, float, float]] = []
    for noise in args.noise:
        rows.append((f"honest, noise {noise:g}", src, noise, 0.0))
    for qtype in args.qtype:
        t0 = time.monotonic()
        rows.append((f"requantized {qtype}", requantize(src, qtype), 0.0, time.monotonic() - t0))
    for scale in args.scale:
        t0 = time.monotonic()
        rows.append(
            (f"perturbed, scale {scale:g}", perturb(src, scale), 0.0, time.monotonic() - t0)
        )
    reference = greedy_answers(src, requests)
    print(f"greedy agreement with the reference over {len(requests)} {args.suite} cases")
    for label, path, noise, built in rows:
        seeds = range(args.seeds if noise else 1)
        shares = [
            agreement(greedy_answers(path, requests, noise, 1000 * s), reference) for s in seeds
        ]
        types = ", ".join(f"{k} x{v}" for k, v in sorted(tensor_types(path).items()))
        share = sum(shares) / len(shares)
        print(f"{label:26} {100 * share:5.1f}%  build {built:4.1f} s  [{types}]", flush=True)


if __name__ == "__main__":
    main()
