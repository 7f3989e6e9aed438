"""Replaying a library scenario in a test: generated, checked as the generator promises
(monotonic counters), backfilled into the real promtool and Prometheus, judged by the stage."""

from __future__ import annotations

from pathlib import Path

from rollout.config import load_stack_config
from rollout.local.scenarios import ScenarioSpec, generate
from rollout.model import format_duration
from rollout.review.openmetrics import check_file
from rollout.review.replay import ReplayResult, replay
from support import REPO_ROOT


def replay_scenario(spec: ScenarioSpec, tmp_path: Path, stage: str = "canary") -> ReplayResult:
    path = tmp_path / f"{spec.name}.om"
    generate(spec, path)
    check_file(path, services={(spec.namespace, spec.app)}, monotonic_counters=True)
    return replay(path, load_stack_config(REPO_ROOT, stage), spec.start)


def assert_as_expected(spec: ScenarioSpec, result: ReplayResult) -> None:
    expected = spec.expected
    assert expected is not None
    when = "-" if result.decided_after is None else format_duration(result.decided_after)
    verdicts = [c.verdict for c in result.checks]
    summary = {v: verdicts.count(v) for v in ("pass", "hold", "fail")}
    assert expected.matches(result.action, result.decided_after), (
        f"{spec.name}: expected {expected.action} "
        f"[{expected.earliest}, {expected.latest}], got {result.action} at {when} ({result.reason}; {summary})"
    )
