"""Benchmark: the in-cluster bot's time from the third failing check's due instant to its
rollback decision, with the container's exact command line.

    uv run python benchmarks/bench_incluster.py [--runs 3] [--check-seconds 2]

Each run starts `rollout watch --forever --leader-elect ...` as the rendered Deployment runs it
(tests/support/incluster.py: a real Prometheus and Alertmanager on 127.0.0.1, synthetic pods with
a failing canary, the Pulumi CLI stand-in and the Lease API stand-in), deploys `canary` with the
fault already present, and measures when the first `pulumi up` of the rollback starts against
the instant its third failing check in a row was due (judged again afterwards at every instant
of the stage's grid from the same Prometheus), and
counts the Pulumi CLI calls the tick made in between (the stand-in starts a Python process
per call, about half a second on this machine; the real CLI talks to its backend). The watch
wakes at every check instant of the stage, so the figure is bounded by one check interval plus
the time one tick takes (reading the stack, the checks' queries), not by a scheduler.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # the rig lives in tests/support

from support.incluster import bot_rig  # noqa: E402

from rollout.config import load_release  # noqa: E402
from rollout.release.bot import check_release  # noqa: E402
from rollout.review.localstack import wait_for  # noqa: E402


def third_failing_check(run, since: datetime, check_seconds: int, window: int, before: datetime) -> datetime:
    """The instant of the stage's grid at which three checks in a row had failed, judged again
    afterwards from the same Prometheus (a past instant answers the same)."""
    release = load_release(run.project)
    stage = release.stage("canary")
    k = max(1, math.ceil(window / check_seconds))
    streak = 0
    while True:
        at = since + timedelta(seconds=k * check_seconds)
        if at > before:
            raise SystemExit("the bot rolled back before three checks had failed")
        streak = streak + 1 if check_release(release, run.live.prom, stage, at, since).verdict == "fail" else 0
        if streak == 3:
            return at
        k += 1


def one_run(check_seconds: int) -> tuple[float, float]:
    window = 3 * check_seconds
    analysis = {"checkInterval": f"{check_seconds}s", "window": f"{window}s", "consecutiveFailures": 3,
                "passingChecksToPromote": 3, "minCanaryRequests": 20, "hold": "30s", "progressDeadline": "5s"}
    with tempfile.TemporaryDirectory() as tmp, bot_rig(Path(tmp), analysis, profile="bad") as run:
        run.live.wait_for_full_window()
        since = datetime.now(timezone.utc)
        run.seed_canary(since)
        run.start("a")
        wait_for(lambda: run.fake.state()["outputs"].get("stage") == "stable", 120, "the rollback")
        first_up = run.fake.runs_of("up")[0]
        decided = datetime.fromisoformat(first_up["time"].replace("Z", "+00:00"))
        third_due = third_failing_check(run, since, check_seconds, window, decided)
        # the Pulumi CLI calls of that tick before its first `up` (stack outputs, history, tags,
        # the compare-and-apply re-read): each is a process start of the stand-in here
        cli_calls = [c for c in run.fake.calls()
                     if third_due <= datetime.fromisoformat(c["time"].replace("Z", "+00:00")) < decided]
        return (decided - third_due).total_seconds(), (decided - since).total_seconds(), len(cli_calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--check-seconds", type=int, default=2)
    args = parser.parse_args()
    rows = []
    for run in range(args.runs):
        after_due, after_start, calls = one_run(args.check_seconds)
        rows.append((after_due, after_start, calls))
        print(f"run {run + 1}: third failing check due -> first `pulumi up` of the rollback {after_due:.1f}s "
              f"({calls} Pulumi CLI calls in between; stage start -> rollback {after_start:.1f}s)")
    print()
    print(f"{'metric':<48}{'median':>10}{'min':>10}{'max':>10}")
    for name, values in (("third failing check due -> rollback up (s)", [r[0] for r in rows]),
                         ("stage start -> rollback up (s)", [r[1] for r in rows]),
                         ("Pulumi CLI calls before the first up", [r[2] for r in rows])):
        print(f"{name:<48}{statistics.median(values):>10.1f}{min(values):>10.1f}{max(values):>10.1f}")
    print(f"(check interval {args.check_seconds}s, window {3 * args.check_seconds}s, 3 failing checks; "
          "`rollout watch --forever --leader-elect` as the Deployment runs it)")


if __name__ == "__main__":
    main()
