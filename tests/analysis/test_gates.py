"""rollout.analysis.gates: every gate at, just below and just above its target and critical threshold,
plus missing data, NaN, too little traffic and a missing stable baseline."""

from __future__ import annotations

import json
import math
from datetime import timedelta

import pytest
from support.stages import FLAGS_ON

from rollout.analysis.gates import (
    AVAILABILITY,
    EXIT_ERROR,
    GateMeasurement,
    Measurements,
    evaluate,
    exit_code,
    worst_verdict,
)
from rollout.model import Direction, Gates, Stage


def make_stage(min_requests: int = 50, weight: int = 10, gates: dict | None = None) -> Stage:
    return Stage.model_validate(
        {
            "stage": {"name": "canary", "weight": weight},
            "analysis": {"minCanaryRequests": min_requests},
            "gates": gates or {},
            "flags": FLAGS_ON,
        }
    )


STAGE = make_stage()
GATES = dict(STAGE.gates.items())
# a value comfortably healthy for every gate, so one gate at a time can be moved
HEALTHY = {
    "error_rate": 0.0,
    "p95_latency_seconds": 0.1,
    "test_pass_rate": 1.0,
    "pipelex_success_rate": 0.99,
    "spice_tasks_per_minute": 6.0,
    "fallback_rate": 0.01,
}
EPS = 1e-9


def measurements(
    overrides: dict[str, float | None] | None = None,
    requests: float | None = 1000,
    stable: float | None = 0.5,
    available: float | None = 1.0,
) -> Measurements:
    values = {**HEALTHY, **(overrides or {})}
    return Measurements(
        gates={
            name: GateMeasurement(canary=value, stable=stable, query=f"{name}{{track=\"canary\"}}")
            for name, value in values.items()
        },
        canary_requests=requests,
        requests_query="requests * 300",
        availability=GateMeasurement(canary=available, stable=1.0, query="max_over_time(available[10m])"),
    )


def test_healthy_values_cover_every_gate_and_pass() -> None:
    assert set(HEALTHY) == {name for name, _ in Gates().items()}
    result = evaluate(STAGE, measurements())
    assert result.verdict == "pass"
    assert all(g.ok and g.status == "pass" for g in result.gates)


def _step(name: str, towards_bad: bool) -> float:
    """A tiny move towards the unhealthy side (up for a maximum, down for a minimum)."""
    up = GATES[name].direction is Direction.MAX
    return EPS if up == towards_bad else -EPS


def _cases() -> list[tuple[str, str, float, str]]:
    cases = []
    for name, gate in Gates().items():
        cases.append((name, "at target", gate.target, "pass"))
        cases.append((name, "just better than target", gate.target - _step(name, True), "pass"))
        if gate.critical is None:
            cases.append((name, "just worse than target", gate.target + _step(name, True), "hold"))
            continue
        if gate.critical != gate.target:
            cases.append((name, "just worse than target", gate.target + _step(name, True), "hold"))
        cases.append((name, "just better than critical", gate.critical - _step(name, True), "hold"))
        cases.append((name, "at critical", gate.critical, "hold"))
        past_critical = "fail" if gate.rollback else "hold"
        cases.append((name, "just worse than critical", gate.critical + _step(name, True), past_critical))
    return cases


@pytest.mark.parametrize(("name", "where", "value", "expected"), _cases())
def test_gate_boundaries(name: str, where: str, value: float, expected: str) -> None:
    result = evaluate(STAGE, measurements({name: value}))
    gate = next(g for g in result.gates if g.name == name)
    assert gate.status == expected, f"{name} {where}: {gate.message}"
    assert result.verdict == expected
    assert gate.ok is (expected == "pass")
    others = [g for g in result.gates if g.name != name]
    assert all(g.status == "pass" for g in others)
    if "worse than critical" in where:
        assert gate.threshold == GATES[name].critical
        assert "critical" in gate.message and name in result.reason
    else:
        assert gate.threshold == GATES[name].target


def test_the_plans_no_rollback_gates_hold_on_a_critical_breach() -> None:
    """Day-0 plan: error rate, P95 and test pass rate roll back; Pipelex success does not."""
    rolling_back = {name for name, gate in Gates().items() if gate.rollback}
    assert rolling_back == {"error_rate", "p95_latency_seconds", "test_pass_rate"}
    result = evaluate(STAGE, measurements({"pipelex_success_rate": 0.5}))
    assert result.verdict == "hold"
    assert "does not roll back" in next(g for g in result.gates if g.name == "pipelex_success_rate").message
    strict = make_stage(gates={"pipelexSuccessRate": {"target": 0.95, "critical": 0.9, "rollback": True}})
    assert evaluate(strict, measurements({"pipelex_success_rate": 0.5})).verdict == "fail"


def test_spice_task_rate_has_no_critical_so_zero_tasks_only_holds() -> None:
    result = evaluate(STAGE, measurements({"spice_tasks_per_minute": 0.0}))
    assert result.verdict == "hold"
    assert "spice_tasks_per_minute" in result.reason


@pytest.mark.parametrize("missing", [None, math.nan])
@pytest.mark.parametrize("name", list(HEALTHY))
def test_missing_or_nan_value_holds_never_passes(name: str, missing: float | None) -> None:
    result = evaluate(STAGE, measurements({name: missing}))
    gate = next(g for g in result.gates if g.name == name)
    assert gate.status == "hold" and not gate.ok
    assert "never a pass" in gate.message
    assert result.verdict == "hold"


def test_no_series_at_all_holds() -> None:
    empty = Measurements(gates={}, canary_requests=None)
    result = evaluate(STAGE, empty)
    assert result.verdict == "hold"
    assert len(result.gates) == len(HEALTHY) + 1  # and the canary's availability
    assert all(g.status == "hold" and g.value is None for g in result.gates)


def test_critical_breach_beats_missing_data_on_another_gate() -> None:
    result = evaluate(STAGE, measurements({"error_rate": 0.05, "spice_tasks_per_minute": None}))
    assert result.verdict == "fail"


@pytest.mark.parametrize(
    ("requests", "expected"), [(49, "hold"), (50, "pass"), (0, "hold"), (None, "hold"), (math.nan, "hold")]
)
def test_too_little_traffic_holds(requests: float | None, expected: str) -> None:
    result = evaluate(STAGE, measurements(requests=requests))
    assert result.verdict == expected
    if expected == "hold":
        assert "too little canary traffic" in result.reason


def test_too_little_traffic_holds_even_on_a_critical_breach() -> None:
    result = evaluate(STAGE, measurements({"error_rate": 0.2}, requests=10))
    assert result.verdict == "hold"
    assert "not trusted yet" in result.reason and "error_rate" in result.reason
    assert next(g for g in result.gates if g.name == "error_rate").status == "fail"


def test_min_canary_requests_zero_accepts_no_traffic_but_not_missing_count() -> None:
    stage = make_stage(min_requests=0)
    assert evaluate(stage, measurements(requests=0)).verdict == "pass"
    assert evaluate(stage, measurements(requests=None)).verdict == "hold"


def test_missing_stable_baseline_does_not_change_the_verdict() -> None:
    with_baseline = evaluate(STAGE, measurements(stable=0.5))
    without = evaluate(STAGE, measurements(stable=None))
    assert with_baseline.verdict == without.verdict == "pass"
    assert all(g.baseline is None and "stable no data" in g.message for g in without.gates if g.name != AVAILABILITY)
    from rollout.analysis.signals import BY_KEY
    from rollout.numbers import number

    assert all(g.baseline == 0.5 and f"(stable {number(0.5, BY_KEY[g.name].unit)})" in g.message
               for g in with_baseline.gates if g.name != AVAILABILITY)


def test_stage_thresholds_come_from_the_stage() -> None:
    strict = Stage.model_validate(
        {
            "stage": {"name": "canary", "weight": 10},
            "gates": {"errorRate": {"target": 0.0, "critical": 0.0}},
            "flags": FLAGS_ON,
        }
    )
    assert evaluate(strict, measurements({"error_rate": 0.0005})).verdict == "fail"
    assert evaluate(STAGE, measurements({"error_rate": 0.0005})).verdict == "pass"


def test_infinite_latency_is_a_value_not_missing_data() -> None:
    # histogram_quantile answers +Inf when the quantile lies in the +Inf bucket
    result = evaluate(STAGE, measurements({"p95_latency_seconds": math.inf}))
    assert result.verdict == "fail"


def test_to_dict_is_json_and_matches_the_cli_shape() -> None:
    result = evaluate(STAGE, measurements({"p95_latency_seconds": math.inf, "error_rate": math.nan}))
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["stage"] == "canary" and data["verdict"] == "fail"
    assert [g["name"] for g in data["gates"]] == [*HEALTHY, AVAILABILITY]
    assert data["immediate"] is False
    for gate in data["gates"]:
        assert {"name", "value", "threshold", "ok", "status", "message", "query", "baseline"} <= set(gate)
    latency = next(g for g in data["gates"] if g["name"] == "p95_latency_seconds")
    assert latency["value"] == "inf" and latency["ok"] is False


def test_exit_codes_and_worst_verdict() -> None:
    assert [exit_code(v) for v in ("pass", "fail", "hold")] == [0, 1, 2]
    assert EXIT_ERROR == 3
    assert evaluate(STAGE, measurements()).exit_code == 0
    assert worst_verdict(["pass", "hold", "pass"]) == "hold"
    assert worst_verdict(["hold", "fail", "pass"]) == "fail"
    assert worst_verdict(["pass"]) == "pass"
    assert worst_verdict([]) == "hold"


# --------------------------------------------------------------------------- canary availability


def test_a_fully_available_canary_passes_the_availability_gate() -> None:
    result = evaluate(STAGE, measurements())
    gate = next(g for g in result.gates if g.name == AVAILABILITY)
    assert (gate.status, gate.value, gate.target, gate.direction) == ("pass", 1.0, 1.0, "min")
    assert "fully available within the last 10m" in gate.message
    assert result.immediate is False


@pytest.mark.parametrize("requests", [None, 0, 1000])
def test_a_canary_never_available_for_the_deadline_fails_at_once_whatever_the_traffic(requests) -> None:
    """A canary whose pods never become ready exports nothing: its own metrics only hold, so
    kube-state-metrics' evidence decides, and the deadline already is the persistence."""
    silent = {name: None for name in HEALTHY}
    result = evaluate(STAGE, measurements(silent, requests=requests, available=0.0))
    assert result.verdict == "fail" and result.immediate is True
    assert result.reason.startswith("canary unavailable: the canary Deployment was never fully available in the last 10m")
    assert "0 % of its desired replicas ready" in result.reason


def test_partly_available_within_the_deadline_is_not_enough() -> None:
    result = evaluate(STAGE, measurements(available=0.75))
    assert result.verdict == "fail" and result.immediate and "75 % of its desired replicas" in result.reason


def test_no_kube_state_metrics_series_holds_and_never_passes() -> None:
    result = evaluate(STAGE, measurements(available=None))
    gate = next(g for g in result.gates if g.name == AVAILABILITY)
    assert gate.status == "hold" and result.verdict == "hold" and not result.immediate
    assert "no kube-state-metrics series" in gate.message


def test_the_progress_deadline_comes_from_the_stage() -> None:
    stage = Stage.model_validate({
        "stage": {"name": "canary", "weight": 10}, "analysis": {"progressDeadline": "20m"}, "flags": FLAGS_ON,
    })
    assert "in the last 20m" in evaluate(stage, measurements(available=0.0)).reason


def test_the_rollback_target_has_no_availability_gate() -> None:
    stage = Stage.model_validate({"stage": {"name": "stable", "weight": 0}, "flags": FLAGS_ON})
    assert AVAILABILITY not in {g.name for g in evaluate(stage, measurements(available=0.0)).gates}


def test_within_the_first_deadline_of_a_stage_an_unavailable_canary_only_holds() -> None:
    """Pods may still be starting: the deadline window must lie inside the stage before it fails."""
    early = measurements(available=0.0)
    early = Measurements(**{**early.__dict__, "stage_age": timedelta(minutes=4)})
    result = evaluate(STAGE, early)
    gate = next(g for g in result.gates if g.name == AVAILABILITY)
    assert (gate.status, result.immediate) == ("hold", False)
    assert "the progress deadline ends in 6m" in gate.message
    late = Measurements(**{**early.__dict__, "stage_age": timedelta(minutes=10)})
    assert evaluate(STAGE, late).immediate is True


# --------------------------------------------------------------------------- impossible values


@pytest.mark.parametrize(
    ("gate", "value", "why"),
    [
        ("test_pass_rate", math.inf, "inf is not a finite number"),  # higher is better: +Inf would pass
        ("pipelex_success_rate", 7.0, "7 is a ratio above 1"),
        ("spice_tasks_per_minute", math.inf, "inf is not a finite number"),
        ("error_rate", -5.0, "-5 is negative"),
        ("error_rate", math.inf, "inf is not a finite number"),
        ("p95_latency_seconds", -math.inf, "-inf is not a finite number"),
        ("p95_latency_seconds", -0.2, "-0.2 is negative"),
        ("fallback_rate", -math.inf, "-inf is not a finite number"),
    ],
)
def test_an_impossible_value_holds_and_names_the_query_and_value(gate: str, value: float, why: str) -> None:
    result = evaluate(STAGE, measurements({gate: value}))
    assert result.verdict == "hold"
    judged = next(g for g in result.gates if g.name == gate)
    assert judged.status == "hold" and not judged.ok
    assert judged.message.startswith(f"impossible value: {why}; not trusted, never a pass (query {gate}{{")


@pytest.mark.parametrize("requests", [math.inf, -math.inf, -3.0])
def test_an_impossible_request_count_never_passes(requests: float) -> None:
    result = evaluate(STAGE, measurements(requests=requests))
    assert result.verdict == "hold" and result.reason.startswith("impossible canary request count")
    assert "requests * 300" in result.reason


def test_an_impossible_availability_holds() -> None:
    result = evaluate(STAGE, measurements(available=2.0))
    gate = next(g for g in result.gates if g.name == AVAILABILITY)
    assert gate.status == "hold" and "ratio above 1" in gate.message and not result.immediate


def test_a_ratio_a_hair_above_one_from_float_rounding_is_still_a_ratio() -> None:
    assert evaluate(STAGE, measurements({"test_pass_rate": 1 + 1e-12})).verdict == "pass"
