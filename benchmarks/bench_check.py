"""Queries and seconds per release-bot check against a live local Prometheus.

Starts a real Prometheus 2.42 on 127.0.0.1 scraping synthetic Genesis pods (stable + canary),
with the stage's real recording rules, then times `measure` + `evaluate` (one check) and the
restart path (re-evaluating the last N check instants retrospectively).

    uv run python benchmarks/bench_check.py [--checks 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # the live-stack helpers live in tests/support

from support.live import compressed_config, live_stack

from rollout.analysis.decision import decide
from rollout.analysis.gates import evaluate
from rollout.release.measuring import measure


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checks", type=int, default=30)
    args = parser.parse_args()

    config = compressed_config(["genesis"])
    stage = config.stage
    service = config.project.services[0]
    started = time.perf_counter()
    with live_stack(config, {"genesis": "healthy"}) as stack:
        stack.wait_for_full_window()
        setup = time.perf_counter() - started

        seconds, queries, verdicts = [], [], []
        for _ in range(args.checks):
            t0 = time.perf_counter()
            result = evaluate(stage, measure(stack.prom, stage, service))
            seconds.append(time.perf_counter() - t0)
            queries.append(result.queries)
            verdicts.append(result.verdict)

        # restart path: re-evaluate the last N check instants instead of keeping state
        n = max(stage.analysis.consecutive_failures, stage.analysis.passing_checks_to_promote)
        now = datetime.now(UTC)
        instants = [now - i * timedelta(seconds=1) for i in reversed(range(n))]
        t0 = time.perf_counter()
        past = [evaluate(stage, measure(stack.prom, stage, service, at)).verdict for at in instants]
        decision = decide(stage, now - stage.analysis.hold, now, past)
        restart = time.perf_counter() - t0

    print(f"setup (Prometheus start + first full {stage.analysis.rate_window.total_seconds():g}s window): {setup:.1f} s")
    tally = {v: verdicts.count(v) for v in sorted(set(verdicts))}
    print(f"checks: {len(seconds)}  verdicts: {tally}")
    print(f"queries per check: {statistics.mean(queries):g}")
    print(
        f"seconds per check: median {statistics.median(seconds) * 1000:.1f} ms, "
        f"p95 {percentile(seconds, 0.95) * 1000:.1f} ms, max {max(seconds) * 1000:.1f} ms"
    )
    print(
        f"restart re-evaluation of {n} past checks: {restart * 1000:.1f} ms "
        f"({n * statistics.mean(queries):g} queries) -> {decision.action}"
    )


if __name__ == "__main__":
    main()
