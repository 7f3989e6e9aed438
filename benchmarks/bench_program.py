"""How long the Pulumi program takes to evaluate under the mock runtime, and how much each
promotion step changes.

    uv run python benchmarks/bench_program.py [--repeat 5]

Prints two tables: program evaluation time for 1, 10 and 50 services (cold = first run in the
process, incl. imports; warm = median of the following runs), and per stage step the number
of resources whose desired state changes. Target: one service well under 2 s.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

SERVICE_COUNTS = (1, 10, 50)


def values_with_services(base: dict, count: int) -> dict:
    values = copy.deepcopy(base)
    template = values["services"][0]
    names = ["genesis"] + [f"svc-{i:02d}" for i in range(1, count)]
    values["services"] = [{**template, "name": name} for name in names]
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="warm runs per size")
    args = parser.parse_args()

    started = time.perf_counter()
    from rollout.model import STAGE_ORDER
    from rollout.review.mock_runtime import run_program, values_for_stage
    from rollout.review.plan import diff_stacks

    import_seconds = time.perf_counter() - started
    base = values_for_stage(REPO_ROOT, "canary")

    print(f"imports (pulumi, pulumi_kubernetes, rollout): {import_seconds:.2f} s\n")
    print(f"{'services':>8} {'resources':>9} {'cold s':>8} {'warm median s':>14} {'warm min s':>11}")
    cold_done = False
    for count in SERVICE_COUNTS:
        values = values_with_services(base, count)
        timings = []
        resources = 0
        for _ in range(args.repeat + (0 if cold_done else 1)):
            t0 = time.perf_counter()
            stack = run_program(values)
            timings.append(time.perf_counter() - t0)
            resources = len(stack.resources)
        cold = timings.pop(0) if not cold_done else float("nan")
        cold_done = True
        print(
            f"{count:>8} {resources:>9} {cold:>8.3f} {statistics.median(timings):>14.3f} {min(timings):>11.3f}"
        )

    print("\nresources changed per promotion step (1 service):")
    print(f"{'step':<22} {'changed':>7} {'added':>5} {'removed':>7} {'fields':>6}  resources")
    stacks = {stage: run_program(values_for_stage(REPO_ROOT, stage)) for stage in STAGE_ORDER}
    for before, after in itertools.pairwise(STAGE_ORDER):
        result = diff_stacks(stacks[before], stacks[after], before, after)
        fields = sum(len(c.fields) for c in result.changed)
        names = ", ".join(c.name for c in result.changed)
        print(
            f"{before + ' -> ' + after:<22} {len(result.changed):>7} {len(result.added):>5} "
            f"{len(result.removed):>7} {fields:>6}  {names}"
        )
    rollback = diff_stacks(stacks[STAGE_ORDER[-1]], stacks[STAGE_ORDER[0]], STAGE_ORDER[-1], STAGE_ORDER[0])
    print(
        f"{'rollback full -> stable':<22} {len(rollback.changed):>7} {len(rollback.added):>5} "
        f"{len(rollback.removed):>7} {sum(len(c.fields) for c in rollback.changed):>6}  "
        + ", ".join(c.name for c in rollback.changed)
    )


if __name__ == "__main__":
    main()
