"""The judge on a gate (rollout.analysis.evidence) and in a check (rollout.analysis.gates):
read at any interval like a fresh computation, sticky once crossed, a regression that fails a
rollback gate at once and holds the others, stable breaches reported and configurable."""

from __future__ import annotations

import json

import numpy as np
import pytest
from support.judge_sim import BOUNDARIES, COARSE_BUCKETS, Scenario, evidence_of, simulate
from support.stages import FLAGS_ON

from rollout.analysis.decision import decide
from rollout.analysis.evidence import GateJudge, LatencyCounts, RateCounts
from rollout.analysis.gates import GateMeasurement, Measurements, evaluate
from rollout.model import Judge, Stage

JUDGE = Judge(tolerance=0.5)


def counts(sim: dict[str, np.ndarray], stage: int = 0) -> RateCounts:
    return RateCounts(*(sim[k][stage].astype(float) for k in ("xc", "nc", "xs", "ns")), source="test")


def test_the_evidence_at_an_interval_is_what_a_fresh_computation_from_the_start_gives() -> None:
    """A restarted bot (or a replay reading one path at every check) sees the same evidence."""
    sim = simulate(Scenario("late", q_canary=0.01, fault_start=80), 1, 120, np.random.default_rng(1))
    whole = GateJudge("error_rate", JUDGE, 0.005, counts(sim))
    for k in (0, 30, 79, 85, 119):
        prefix = {key: value[:, : k + 1] for key, value in sim.items() if key != "bounds"}
        fresh = GateJudge("error_rate", JUDGE, 0.005, counts(prefix)).at(k)
        assert whole.at(k) == fresh


def test_a_regression_is_sticky_and_names_where_it_crossed() -> None:
    sim = simulate(Scenario("blip", q_canary=0.05, fault_start=30), 1, 120, np.random.default_rng(2))
    blip = counts(sim)
    for array in (blip.canary_events,):
        array[40:] = np.round(blip.canary_exposure[40:] * 0.0005)  # healthy again after 10 minutes
    judge = GateJudge("error_rate", JUDGE, 0.005, blip)
    before, after = judge.at(29), judge.at(119)
    assert not before.regression and before.crossed_interval is None
    assert after.regression and 30 <= after.crossed_interval < 40  # within the 10 bad intervals
    assert after.e_value < after.e_max  # the evidence decays, the verdict stays
    assert json.loads(json.dumps(after.to_dict()))["regression"] is True


def test_latency_evidence_names_the_boundary_and_both_p95s() -> None:
    sim = simulate(Scenario("slow", floor=0.015, mean_stable=0.025, mean_canary=0.0575), 1, 30, np.random.default_rng(3))
    judge = GateJudge("p95_latency_seconds", Judge(tolerance=0.2, quantile=0.95), 0.0025,
                      LatencyCounts(tuple(BOUNDARIES), sim["cb"][0].astype(float), sim["sb"][0].astype(float), "test"),
                      warmup_intervals=3, budget=0.01)
    evidence = judge.at(29)
    assert evidence.quantile == 0.95 and evidence.quantile_canary == evidence.p95_canary
    assert evidence.warmup_intervals == 3 and evidence.alpha_budget == 0.01
    assert evidence.regression and evidence.kind == "latency"
    # the boundary nearest stable's P95 (0.0910 s) in the app's layout (..., 0.08, 0.0961, 0.1154, ...)
    assert evidence.boundary == 0.0961 and 0.0886 < evidence.p95_stable < 0.1058 and 0.16 < evidence.p95_canary < 0.2
    assert evidence.ratio_low > 2  # beyond the tolerance: more than twice stable's share is slow
    assert "share slower than 0.0961s" in evidence.summary()
    assert evidence.bucket_spacing == pytest.approx(2.5 ** 0.2, rel=1e-3)  # the app's layout: one tolerance


def test_latency_evidence_says_when_the_buckets_are_coarser_than_the_tolerance() -> None:
    """With 2x-apart buckets around stable's P95 (0.11 s in 0.1-0.2 s) the evidence says so,
    and the replay's calibration line tells the team to change the layout."""
    from rollout.review.replay import _latency_noise

    lines = {}
    for name, layout in (("coarse", COARSE_BUCKETS), ("fine", tuple(BOUNDARIES))):
        sim = simulate(Scenario("aa", buckets=layout), 1, 40, np.random.default_rng(2))
        judge = GateJudge("p95_latency_seconds", Judge(tolerance=0.2, quantile=0.95), 0.0025,
                          LatencyCounts(layout, sim["cb"][0].astype(float), sim["sb"][0].astype(float), "test"))
        evidence = judge.at(39)
        assert json.loads(json.dumps(evidence.to_dict()))["bucket_spacing"] == evidence.bucket_spacing
        lines[name] = (evidence.bucket_spacing, _latency_noise([evidence]))
    assert lines["coarse"][0] == 2.0 and "2x apart, coarser than 1 + tolerance = 1.2" in lines["coarse"][1]
    assert lines["fine"][0] < 1.21 and "coarser" not in lines["fine"][1]


def stage(**gates: dict) -> Stage:
    return Stage.model_validate({
        "stage": {"name": "canary", "weight": 10}, "flags": FLAGS_ON,
        "analysis": {"checkInterval": "1m", "window": "2m"},
        "gates": {
            "errorRate": {"target": 0.001, "critical": 0.01, "judge": {"tolerance": 0.5}},
            "pipelexSuccessRate": {"target": 0.95, "critical": 0.9, "rollback": False, "judge": {"tolerance": 0.5}},
            **gates,
        },
    })


def measured(values: dict[str, tuple[float, float]], evidence: dict) -> Measurements:  # noqa: ANN001
    healthy = {"error_rate": (0.0005, 0.0005), "p95_latency_seconds": (0.1, 0.1), "test_pass_rate": (1.0, 1.0),
               "pipelex_success_rate": (0.99, 0.99), "spice_tasks_per_minute": (10.0, 10.0), "fallback_rate": (0.0, 0.0)}
    healthy.update(values)
    return Measurements(
        gates={name: GateMeasurement(canary, stable, name) for name, (canary, stable) in healthy.items()},
        canary_requests=1000.0, availability=GateMeasurement(1.0, 1.0, "availability"), evidence=evidence,
    )


def test_a_judged_regression_fails_a_rollback_gate_and_rolls_back_at_once() -> None:
    """The canary's error rate (0.8 %) is under the 1 % threshold, yet clearly worse than
    stable's (0.05 %): the absolute gate only holds, the judge fails it."""
    result = evaluate(stage(), measured({"error_rate": (0.008, 0.0005)}, {"error_rate": evidence_of("error_rate", 0.008)}))
    gate = next(g for g in result.gates if g.name == "error_rate")
    assert gate.status == "fail" and gate.judged_regression
    assert result.verdict == "fail" and result.immediate
    assert result.reason.startswith("error_rate judge: canary worse than stable beyond the tolerance")
    assert gate.to_dict()["evidence"]["regression"] is True
    s = stage()
    now = s.analysis.check_interval * 5
    from datetime import UTC, datetime

    start = datetime(2026, 1, 5, tzinfo=UTC)
    assert decide(s, start, start + now, ["pass", "pass", result]).action == "rollback"


def test_a_judged_regression_on_a_gate_that_does_not_roll_back_holds() -> None:
    result = evaluate(stage(), measured({}, {"pipelex_success_rate": evidence_of("pipelex_success_rate", 0.05, 0.002)}))
    gate = next(g for g in result.gates if g.name == "pipelex_success_rate")
    assert gate.status == "hold" and not gate.judged_regression and not result.immediate
    assert "rollback: false" in gate.message


def test_no_regression_keeps_the_absolute_verdict_and_explains_the_evidence() -> None:
    result = evaluate(stage(), measured({}, {"error_rate": evidence_of("error_rate", 0.0005)}))
    gate = next(g for g in result.gates if g.name == "error_rate")
    assert gate.status == "pass" and "judge: no evidence that the canary is worse" in gate.message
    assert result.verdict == "pass"


@pytest.mark.parametrize(("policy", "status"), [("rollback", "fail"), ("hold", "hold")])
def test_a_breach_the_stable_track_shares_is_reported_and_follows_the_setting(policy: str, status: str) -> None:
    """Both tracks at 4 % errors (an infrastructure incident): the canary is not worse. The plan
    rolls back on the absolute threshold anyway; analysis.stableBreach: hold holds instead."""
    s = stage()
    s = s.model_copy(update={"analysis": s.analysis.model_copy(update={"stable_breach": policy})})
    result = evaluate(s, measured({"error_rate": (0.04, 0.04)}, {"error_rate": evidence_of("error_rate", 0.04, 0.04)}))
    gate = next(g for g in result.gates if g.name == "error_rate")
    assert gate.status == status and not gate.judged_regression
    assert "the canary is not worse than stable (stable breaches the critical threshold too)" in gate.message


@pytest.mark.parametrize("policy", ["rollback", "hold"])
def test_a_canary_breach_with_a_healthy_stable_fails_whatever_the_stable_breach_setting(policy: str) -> None:
    """The canary at 4 % errors, stable at 0.05 %, and a judge that has not (yet) declared: the
    critical breach is the canary's alone, so it fails under both settings and never reads as
    "not worse than stable" (which must look at stable's value, not the canary's)."""
    s = stage()
    s = s.model_copy(update={"analysis": s.analysis.model_copy(update={"stable_breach": policy})})
    result = evaluate(s, measured({"error_rate": (0.04, 0.0005)}, {"error_rate": evidence_of("error_rate", 0.0005)}))
    gate = next(g for g in result.gates if g.name == "error_rate")
    assert gate.status == "fail" and not gate.judged_regression and result.verdict == "fail"
    assert "not worse than stable" not in gate.message and "stableBreach" not in gate.message


def test_explicit_alphas_come_off_the_top_and_the_rest_splits_over_gates_and_services() -> None:
    s = stage(p95LatencySeconds={"target": 0.2, "critical": 0.5, "judge": {"tolerance": 1.0, "alpha": 0.001}})
    assert s.judge_alpha("p95_latency_seconds") == 0.001
    assert s.judge_alpha("error_rate") == pytest.approx((0.01 - 0.001) / 2)
    # two services: each has its explicit 0.001, the other 2 gates x 2 services share the rest
    assert s.judge_alpha("error_rate", services=2) == pytest.approx((0.01 - 0.002) / 4)
    per_release = sum(s.judge_alpha(name, services=2) for name, _ in s.gates.judged()) * 2
    assert per_release == pytest.approx(0.01)


def test_explicit_alphas_that_leave_nothing_are_an_error_naming_the_budget() -> None:
    with pytest.raises(ValueError, match="leaves nothing of analysis.judgeAlpha"):
        stage(p95LatencySeconds={"target": 0.2, "critical": 0.5, "judge": {"tolerance": 1.0, "alpha": 0.01}})


def test_a_quantile_on_a_rate_gate_is_an_error_naming_the_gate() -> None:
    with pytest.raises(ValueError, match="errorRate.judge.quantile: only the latency gate"):
        stage(errorRate={"target": 0.001, "critical": 0.01, "judge": {"tolerance": 0.5, "quantile": 0.95}})
