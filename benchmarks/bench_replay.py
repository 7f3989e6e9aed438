"""How long `rollout replay` takes on a big stage: 48 h scraped every 15 s, 10 pods per track.

Generates the stage (healthy, seeded), then replays it through stage canary exactly as
`rollout replay` does (check the file, promtool backfill, recording rules, one range query per
expression over the 5-minute check grid) and prints where the time goes. The issue's target is
at most 2 minutes on the project's 2-core machine.

    uv run python benchmarks/bench_replay.py [--pods 10] [--hours 48] [--runs 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from rollout.config import load_stack_config
from rollout.local.scenarios import generate, speed_spec
from rollout.model import format_duration
from rollout.review.replay import replay


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=10, help="pods per track")
    parser.add_argument("--hours", type=float, default=48)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    spec = speed_spec(args.pods, args.hours)
    config = load_stack_config(ROOT, "canary")
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        path = Path(tmp) / "stage.om"
        clock = time.perf_counter()
        info = generate(spec, path)
        print(f"{spec.name}: {info['bytes'] / 1e6:.0f} MB, {int(info['samples']):,} samples, "
              f"generated in {time.perf_counter() - clock:.1f} s (not part of a replay)")
        print("| run | check file | raw backfill (promtool) | recording rules (promtool, Prometheus) | checks | replay total | checks | queries | decision |")
        print("|---|---|---|---|---|---|---|---|---|")
        for run in range(1, args.runs + 1):
            clock = time.perf_counter()
            result = replay(path, config, spec.start)
            total = time.perf_counter() - clock
            s = result.seconds
            print(f"| {run} | {s['check file']:.1f} s | {s['backfill']:.1f} s | {s['rules']:.1f} s | {s['checks']:.2f} s | **{total:.1f} s** "
                  f"| {len(result.checks)} | {result.queries} | {result.action} at +{format_duration(result.decided_after) if result.decided_after else '-'} |")


if __name__ == "__main__":
    main()
