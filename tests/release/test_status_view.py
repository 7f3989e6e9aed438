"""The status view model (rollout.release.status_view): pure, so every figure `rollout status`
shows is checked here without servers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from support import REPO_ROOT as REPO

from rollout.analysis.decision import Decision
from rollout.analysis.evidence import Evidence
from rollout.analysis.gates import CheckResult, GateResult
from rollout.config import load_release
from rollout.release.deployer import DeployedState
from rollout.release.status_view import ladder, next_check, status_view

RELEASE = load_release(REPO)
NOW = datetime(2026, 11, 4, 9, 7, 30, tzinfo=UTC)


def state(stage: str, since: datetime, head: int = 4, **tags: str) -> DeployedState:
    return DeployedState(stage=stage, weight=RELEASE.stage(stage).weight, since=since, update_version=head,
                         tags=tags, head_version=head)


def gate(name: str, status: str, value: float, evidence: Evidence | None = None) -> GateResult:
    return GateResult(name=name, query="q", value=value, baseline=0.001, direction="max", target=0.001,
                      critical=0.01, threshold=0.001, ok=status == "pass", status=status, message=f"{name} {status}",
                      evidence=evidence)


def check(at: datetime, verdict: str, *gates: GateResult) -> CheckResult:
    return CheckResult(stage="gradual", verdict=verdict, reason=f"{verdict} at {at:%H:%M}", gates=list(gates),
                       canary_requests=500.0, min_canary_requests=50, at=at.isoformat())


def wait(stage: str) -> Decision:
    return Decision(action="wait", reason="hold", stage=stage, hold_remaining=timedelta(hours=1))


def test_the_ladder_marks_done_current_next_and_the_rollback_target() -> None:
    assert [(r["stage"], r["state"]) for r in ladder(RELEASE, "gradual")] == [
        ("stable", "rollback target"), ("canary", "done"), ("gradual", "current"), ("majority", "next"), ("full", "later"),
    ]
    at_stable = ladder(RELEASE, "stable")
    assert [r["state"] for r in at_stable] == ["current", "next", "later", "later", "later"]
    assert [r["weight"] for r in at_stable] == [0, 10, 50, 80, 100]


def test_next_check_follows_the_stage_grid_and_waits_a_whole_window_first() -> None:
    since = NOW - timedelta(minutes=7, seconds=30)  # checks every 5 min: 5 min, 10 min after the start
    assert next_check(RELEASE, state("gradual", since), NOW) == since + timedelta(minutes=10)
    fresh = NOW - timedelta(seconds=10)
    assert next_check(RELEASE, state("gradual", fresh), NOW) == fresh + timedelta(minutes=5)
    assert next_check(RELEASE, state("stable", since), NOW) is None


def test_the_view_holds_weights_checks_evidence_hold_pause_and_approval() -> None:
    since = NOW - timedelta(hours=47)
    evidence = Evidence(gate="error_rate", kind="rate", e_value=3.5, e_max=3.5, alpha=0.01, tolerance=0.5,
                        regression=False, crossed_interval=None, ratio=1.2, ratio_low=0.8, ratio_high=1.9,
                        canary_events=12, stable_events=80, intervals=560, source="counters")
    checks = [check(NOW - timedelta(minutes=5 * i), v, gate("error_rate", v, 0.0005, evidence))
              for i, v in ((7, "pass"), (6, "pass"), (5, "hold"), (4, "pass"), (3, "pass"), (2, "pass"), (1, "pass"))]
    paused = "by alice at 2026-11-04T08:00:00Z: INC-42"
    view = status_view(RELEASE, state("gradual", since, **{"rollout:paused": paused}), checks, wait("gradual"), NOW,
                       {"genesis": 49.2})
    assert (view["stage"], view["weight"], view["measured_weight"]) == ("gradual", 50, {"genesis": 49.2})
    assert view["time_in_stage"] == "1d23h" and view["hold_left"] == "1h" and view["hold"] == "2d"
    assert len(view["checks"]) == 5 and view["checks"][0]["verdict"] == "hold"  # the last five, oldest first
    judged = view["checks"][-1]["gates"][0]
    assert judged["evidence"]["e_value"] == 3.5 and judged["evidence"]["threshold"] == 100
    assert (judged["value"], judged["baseline"], judged["target"], judged["critical"]) == (0.0005, 0.001, 0.001, 0.01)
    assert view["paused"] == paused and view["promotion"].startswith("paused by alice")
    assert view["approval"] is None and view["decision"]["action"] == "wait"


def test_approval_shows_what_is_needed_and_goes_stale_with_the_stack() -> None:
    from rollout.model import Release

    needs = RELEASE.stage("majority")
    analysis = needs.analysis.model_copy(update={"approval": "required"})
    release = Release(project=RELEASE.project, stages=[
        s if s.name != "majority" else needs.model_copy(update={"analysis": analysis}) for s in RELEASE.stages])
    since = NOW - timedelta(hours=1)
    view = status_view(release, state("gradual", since), [], wait("gradual"), NOW)
    assert view["approval"] == {"stage": "majority", "approved": None}
    assert "needs an approval" in view["promotion"] and view["measured_weight"] is None
    approved = {"rollout:approved:majority": "update 4 by bob at 2026-11-04T09:00:00Z"}
    view = status_view(release, state("gradual", since, **approved), [], wait("gradual"), NOW)
    assert view["approval"] == {"stage": "majority", "approved": "by bob at 2026-11-04T09:00:00Z"}
    assert view["promotion"] == "allowed"
    stale = status_view(release, state("gradual", since, head=5, **approved), [], wait("gradual"), NOW)
    assert stale["approval"]["approved"] is None


def test_a_gate_without_a_number_keeps_the_view_valid_json() -> None:
    import json
    import math

    nan = check(NOW - timedelta(minutes=1), "hold", gate("error_rate", "hold", math.nan))
    view = status_view(RELEASE, state("gradual", NOW - timedelta(hours=1)), [nan], wait("gradual"), NOW)
    assert json.loads(json.dumps(view, allow_nan=False))["checks"][0]["gates"][0]["value"] == "nan"
