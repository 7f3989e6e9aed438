"""Benchmark: the demo's time from fault onset to the rollback decision, and its whole run.

    uv run python benchmarks/bench_demo.py [--runs 3]

Runs `rollout demo` (real Prometheus + Alertmanager, synthetic pods, the bot) with its default
compressed timing (2 s checks, 3 consecutive failures, 6 s rate window) and prints a table.
The floor is set by the rules, not the code: a rollback needs `consecutive_failures` failing
checks, each at least one check interval apart, after enough bad traffic to fill the window.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from rich.console import Console

from rollout.local.demo import run_demo

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--check-seconds", type=float, default=2.0)
    args = parser.parse_args()
    rows = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            quiet = Console(file=open(Path(tmp) / "log", "w"))
            summary = run_demo(REPO, Path(tmp) / "out", check_seconds=args.check_seconds, console=quiet)
        if not summary.ok:
            raise SystemExit(f"run {run + 1}: the demo did not roll back cleanly: {summary}")
        rows.append((summary.detection_seconds, summary.seconds, summary.queries / max(summary.ticks, 1)))
        print(f"run {run + 1}: fault -> rollback decision {summary.detection_seconds:.1f}s, "
              f"demo {summary.seconds:.1f}s, {summary.queries / summary.ticks:.1f} queries per tick")
    detection = [r[0] for r in rows]
    print()
    print(f"{'metric':<40}{'median':>10}{'min':>10}{'max':>10}")
    for name, values in (
        ("fault onset -> rollback decision (s)", detection),
        ("whole demo (s)", [r[1] for r in rows]),
        ("Prometheus queries per tick", [r[2] for r in rows]),
    ):
        print(f"{name:<40}{statistics.median(values):>10.1f}{min(values):>10.1f}{max(values):>10.1f}")
    print(f"(check interval {args.check_seconds:g}s; a rollback needs 3 failing checks)")


if __name__ == "__main__":
    main()
