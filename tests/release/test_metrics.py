"""The bot's own metrics (rollout.release.metrics) from a tick's outcome. Pure: no server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from support.fake_pulumi import REPO
from support.judge_sim import evidence_of

from rollout.analysis.decision import Decision
from rollout.analysis.gates import GateMeasurement, Measurements, evaluate
from rollout.config import load_release
from rollout.release.bot import TickOutcome
from rollout.release.deployer import DeployedState
from rollout.release.metrics import BotMetrics


def sample(metrics: BotMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"rollout": "genesis-rollout", "stack": "prod", **labels})


def outcome(error_rate: float, action: str, evidence: dict | None = None) -> TickOutcome:
    stage = load_release(REPO).stage("gradual")
    values = {"error_rate": error_rate, "p95_latency_seconds": 0.1, "test_pass_rate": 1.0,
              "pipelex_success_rate": 0.99, "spice_tasks_per_minute": 5.0, "fallback_rate": 0.0}
    check = evaluate(stage, Measurements(
        gates={k: GateMeasurement(v, v, k) for k, v in values.items()}, canary_requests=1000,
        availability=GateMeasurement(1.0, 1.0, "a"), evidence=evidence or {},
    ))
    state = DeployedState(stage="gradual", weight=50, since=datetime.now(UTC) - timedelta(hours=1))
    return TickOutcome(state=state, decision=Decision(action, "r", "gradual", timedelta(0)), checks=[check])  # type: ignore[arg-type]


def test_a_tick_sets_stage_weight_decision_verdicts_duration_and_last_check() -> None:
    metrics = BotMetrics("prod")
    metrics.record(outcome(0.05, "rollback"), seconds=0.42, finished=1_700_000_000.0)
    assert sample(metrics, "rollout_stage_info", stage="gradual") == 1
    assert sample(metrics, "rollout_canary_weight_percent") == 50
    assert sample(metrics, "rollout_decision", action="rollback") == 1
    assert sample(metrics, "rollout_decision", action="wait") == 0
    assert sample(metrics, "rollout_check_verdict") == 2
    assert sample(metrics, "rollout_gate_verdict", gate="error_rate") == 2
    assert sample(metrics, "rollout_gate_verdict", gate="p95_latency_seconds") == 0
    assert sample(metrics, "rollout_check_duration_seconds") == 0.42
    assert sample(metrics, "rollout_last_successful_check_timestamp_seconds") == 1_700_000_000.0


def test_the_next_tick_replaces_the_last_ones_stage_and_verdicts() -> None:
    metrics = BotMetrics("prod")
    metrics.record(outcome(0.05, "rollback"), 0.4, 1.0)
    later = outcome(0.0, "wait")
    later.state = DeployedState(stage="stable", weight=0, since=datetime.now(UTC))
    later.checks = []
    metrics.record(later, 0.1, 2.0)
    assert sample(metrics, "rollout_stage_info", stage="gradual") is None  # one stage at a time
    assert sample(metrics, "rollout_stage_info", stage="stable") == 1
    assert sample(metrics, "rollout_gate_verdict", gate="error_rate") is None
    assert sample(metrics, "rollout_check_verdict") is None  # no check this tick: no stale verdict
    assert sample(metrics, "rollout_decision", action="rollback") == 0


def test_a_judged_gate_exports_its_evidence_threshold_and_ratio_and_the_next_tick_clears_them() -> None:
    """What the dashboard's judge panels plot: e-value against 1/alpha, and the ratio with its
    confidence sequence; a gate the judge does not look at exports none."""
    evidence = evidence_of("error_rate", 0.008)
    metrics = BotMetrics("prod")
    metrics.record(outcome(0.008, "rollback", {"error_rate": evidence}), 0.4, 1.0)
    assert sample(metrics, "rollout_judge_evidence", gate="error_rate") == evidence.e_value > evidence.threshold
    assert sample(metrics, "rollout_judge_threshold", gate="error_rate") == evidence.threshold == 200
    low, estimate, high = (sample(metrics, "rollout_judge_ratio", gate="error_rate", bound=b) for b in ("low", "estimate", "high"))
    assert 1.5 < low < estimate < high and estimate == evidence.ratio
    assert sample(metrics, "rollout_judge_evidence", gate="p95_latency_seconds") is None
    metrics.record(outcome(0.0, "wait"), 0.1, 2.0)
    assert sample(metrics, "rollout_judge_evidence", gate="error_rate") is None


def test_gates_the_judge_could_not_judge_are_counted_for_the_alert_and_cleared_after() -> None:
    """rollout_judge_errors is what GenesisReleaseJudgeFailing pages on (alerts/tests/judge-failing)."""
    from rollout.analysis.counts import StageCounts
    from rollout.model import Judge

    stage = load_release(REPO).stage("gradual")
    gates = stage.gates.model_copy(update={
        name: getattr(stage.gates, name).model_copy(update={"judge": Judge(tolerance=0.5)})
        for name in ("error_rate", "p95_latency_seconds")})
    stage = stage.model_copy(update={"gates": gates})
    values = {"error_rate": 0.0, "p95_latency_seconds": 0.1, "test_pass_rate": 1.0,
              "pipelex_success_rate": 0.99, "spice_tasks_per_minute": 5.0, "fallback_rate": 0.0}
    check = evaluate(stage, Measurements(
        gates={k: GateMeasurement(v, v, k) for k, v in values.items()}, canary_requests=1000,
        availability=GateMeasurement(1.0, 1.0, "a"),
        counts=StageCounts(4, failed={"error_rate": "timed out", "p95_latency_seconds": "timed out"}),
    ))
    failing = outcome(0.0, "wait")
    failing.checks = [check]
    metrics = BotMetrics("prod")
    metrics.record(failing, 0.4, 1.0)
    assert sample(metrics, "rollout_judge_errors") == 2
    metrics.record(outcome(0.0, "wait"), 0.4, 2.0)
    assert sample(metrics, "rollout_judge_errors") == 0


def test_pause_approval_and_the_next_promotion_time_follow_the_stack_and_the_decision() -> None:
    """What the dashboard's top row shows beside the stage: paused or not, whether the next
    stage waits for an approval, and when the hold ends (the earliest promotion)."""
    release = load_release(REPO)
    majority = release.stage("majority").model_copy(
        update={"analysis": release.stage("majority").analysis.model_copy(update={"approval": "required"})})
    release = release.model_copy(update={"stages": [majority if s.name == "majority" else s for s in release.stages]})
    metrics = BotMetrics("prod", release)
    waiting = outcome(0.0, "wait")
    waiting.decision = Decision("wait", "hold", "gradual", timedelta(hours=2))  # type: ignore[arg-type]
    metrics.record(waiting, 0.1, 1_000.0)
    assert sample(metrics, "rollout_paused") == 0
    assert sample(metrics, "rollout_approval_state", stage="majority") == 1  # needed, not given
    assert sample(metrics, "rollout_next_promotion_timestamp_seconds") == 1_000.0 + 7200

    tags = {"rollout:paused": "by ana at 2026-01-05T10:00:00Z: INC-42",
            "rollout:approved:majority": "update 7 by bo at 2026-01-05T10:00:00Z"}
    waiting.state = DeployedState(stage="gradual", weight=50, since=waiting.state.since, tags=tags, head_version=7)
    metrics.record(waiting, 0.1, 2_000.0)
    assert sample(metrics, "rollout_paused") == 1
    assert sample(metrics, "rollout_approval_state", stage="majority") == 2  # given at the current head

    metrics.record(outcome(0.05, "rollback"), 0.1, 3_000.0)
    assert sample(metrics, "rollout_next_promotion_timestamp_seconds") is None  # no promotion after a rollback
    stable = outcome(0.0, "wait")
    stable.state, stable.checks = DeployedState(stage="stable", weight=0, since=datetime.now(UTC)), []
    metrics.record(stable, 0.1, 4_000.0)
    assert sample(metrics, "rollout_approval_state", stage="majority") is None
    assert sample(metrics, "rollout_next_promotion_timestamp_seconds") is None
