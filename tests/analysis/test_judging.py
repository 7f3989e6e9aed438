"""The judge in a check (rollout.analysis.judging, .counts, .gates): counts in, evidence and
guardrails out. Data the judge cannot trust holds, never rolls back; an error in the judge holds
its gate and never stops the threshold gates."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pytest
from support.judge_sim import Scenario, simulate
from support.stages import FLAGS_ON

from rollout.analysis import evidence as evidence_module
from rollout.analysis.counts import BucketCounts, StageCounts
from rollout.analysis.evidence import RateCounts
from rollout.analysis.gates import SAMPLE_RATIO, GateMeasurement, Measurements, evaluate
from rollout.model import Stage

INF = math.inf


def stage() -> Stage:
    return Stage.model_validate({
        "stage": {"name": "canary", "weight": 10}, "flags": FLAGS_ON,
        "analysis": {"checkInterval": "1m", "window": "2m"},
        "gates": {
            "errorRate": {"target": 0.001, "critical": 0.01, "judge": {"tolerance": 0.5}},
            "p95LatencySeconds": {"target": 0.2, "critical": 0.5, "judge": {"tolerance": 1.0}},
        },
    })


def measured(counts: StageCounts, error_rate: float = 0.0005) -> Measurements:
    values = {"error_rate": (error_rate, 0.0005), "p95_latency_seconds": (0.1, 0.1), "test_pass_rate": (1.0, 1.0),
              "pipelex_success_rate": (0.99, 0.99), "spice_tasks_per_minute": (10.0, 10.0), "fallback_rate": (0.0, 0.0)}
    return Measurements(
        gates={name: GateMeasurement(canary, stable, name) for name, (canary, stable) in values.items()},
        canary_requests=1000.0, availability=GateMeasurement(1.0, 1.0, "availability"), counts=counts,
    )


def errors(q_canary: float, minutes: int = 30) -> RateCounts:
    sim = simulate(Scenario("x", q_canary=q_canary, q_stable=0.0005), 1, minutes, np.random.default_rng(5))
    return RateCounts(*(sim[k][0].astype(float) for k in ("xc", "nc", "xs", "ns")), source="test")


def buckets(intervals: int = 30) -> BucketCounts:
    """Both tracks alike: per interval 1000 requests, 900 under 0.1 s, 990 under 0.25 s."""
    row = np.array([900.0, 990.0, 1000.0])
    rows = np.tile(row, (intervals, 1))
    return BucketCounts((0.1, 0.25, INF), rows, rows.copy(), np.ones((intervals, 3), dtype=bool), "test")


def gate(result, name: str):  # noqa: ANN001, ANN201
    return next(g for g in result.gates if g.name == name)


def test_a_regression_on_counts_the_judge_trusts_fails_at_once() -> None:
    counts = StageCounts(29, {"error_rate": errors(0.008), "p95_latency_seconds": buckets()})
    result = evaluate(stage(), measured(counts, 0.008))
    assert gate(result, "error_rate").judged_regression and result.verdict == "fail" and result.immediate


def test_a_regression_on_the_error_gauges_estimate_holds_and_says_why() -> None:
    counts = StageCounts(29, {"error_rate": errors(0.008), "p95_latency_seconds": buckets()},
                         untrusted={"error_rate": "errors are estimated from the error gauge"})
    result = evaluate(stage(), measured(counts, 0.008))
    error = gate(result, "error_rate")
    assert error.evidence.regression and not error.judged_regression and error.status == "hold"
    assert "not acted on, holding: errors are estimated from the error gauge" in error.message
    assert result.verdict == "hold" and not result.immediate


def test_a_sample_ratio_mismatch_holds_the_check_and_the_judges_regression() -> None:
    """Weight 10 %, but the canary got 20 % of the weighted requests: not apples to apples."""
    intervals = 30
    counts = StageCounts(intervals - 1, {"error_rate": errors(0.008), "p95_latency_seconds": buckets()},
                         requests=(np.full(intervals, 200.0), np.full(intervals, 800.0)), expected_share=0.1)
    result = evaluate(stage(), measured(counts, 0.008))
    share = gate(result, SAMPLE_RATIO)
    assert share.status == "hold" and share.value == pytest.approx(0.2) and share.baseline == 0.1
    assert "sample ratio mismatch" in share.message
    assert not gate(result, "error_rate").judged_regression and result.verdict == "hold" and not result.immediate


def test_the_configured_share_passes_the_sample_ratio_row() -> None:
    rng = np.random.default_rng(4)
    canary = rng.binomial(1000, 0.1, size=30).astype(float)
    counts = StageCounts(29, {"error_rate": errors(0.0005), "p95_latency_seconds": buckets()},
                         requests=(canary, 1000 - canary), expected_share=0.1)
    result = evaluate(stage(), measured(counts))
    assert gate(result, SAMPLE_RATIO).status == "pass" and result.verdict == "pass", result.reason


def test_the_sample_ratio_test_starts_after_the_warm_up_as_the_judge_does() -> None:
    """Canary pods that are not all ready yet get a fifth of their share for the first 20 minutes,
    then the weight. With analysis.warmup 20m those minutes carry no votes and the row passes;
    without a warm-up the same counts are a mismatch (and the share shown counts only voted
    requests)."""
    intervals = 60
    canary = np.where(np.arange(intervals) < 20, 20.0, 100.0)
    counts = StageCounts(intervals - 1, {"error_rate": errors(0.0005, intervals), "p95_latency_seconds": buckets(intervals)},
                         requests=(canary, 1000.0 - canary), expected_share=0.1)
    warm = stage().model_copy(update={"analysis": stage().analysis.model_copy(update={"warmup": timedelta(minutes=20)})})
    cold = stage().model_copy(update={"analysis": stage().analysis.model_copy(update={"warmup": timedelta(0)})})
    after_warmup = gate(evaluate(warm, measured(counts)), SAMPLE_RATIO)
    assert after_warmup.status == "pass" and after_warmup.value == pytest.approx(0.1), after_warmup.message
    # the same reading (and memo): the test is memoised per warm-up, not once for both
    assert gate(evaluate(cold, measured(counts)), SAMPLE_RATIO).status == "hold"


def test_counts_that_could_not_be_read_hold_the_gate_and_the_thresholds_still_fail() -> None:
    counts = StageCounts(29, {"p95_latency_seconds": buckets()}, failed={"error_rate": "PrometheusError: timed out"})
    result = evaluate(stage(), measured(counts, error_rate=0.05))  # a critical breach on the threshold
    error = gate(result, "error_rate")
    assert error.judge_error == "counts could not be read: PrometheusError: timed out"
    assert error.status == "fail" and result.verdict == "fail" and not result.immediate
    assert "the thresholds still judge" in error.message
    assert error.to_dict()["judge_error"] == error.judge_error


def test_an_exception_in_the_judge_holds_its_gate_and_never_stops_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in the statistics (forced here) is the gate's judge error; the other judged gate and
    every threshold are judged as usual."""
    real = evidence_module.GateJudge

    def broken(gate, judge, alpha, counts, **options):  # noqa: ANN001, ANN003, ANN202
        if gate == "error_rate":
            raise FloatingPointError("forced")
        return real(gate, judge, alpha, counts, **options)

    monkeypatch.setattr("rollout.analysis.judging.GateJudge", broken)
    counts = StageCounts(29, {"error_rate": errors(0.0005), "p95_latency_seconds": buckets()})
    result = evaluate(stage(), measured(counts))
    assert gate(result, "error_rate").judge_error == "FloatingPointError: forced"
    assert gate(result, "error_rate").status == "hold" and result.verdict == "hold"
    assert gate(result, "p95_latency_seconds").evidence is not None
    assert gate(result, "p95_latency_seconds").judge_error is None


def test_a_nan_latency_row_is_skipped_not_raised() -> None:
    """A partial counter decrease leaves one interval's row NaN or not cumulative: that interval
    is skipped on both tracks' side of it, the judge still judges the rest."""
    counts = buckets()
    counts.canary[3] = [np.nan, 990.0, 1000.0]
    counts.stable[7] = [950.0, 900.0, 1000.0]  # not cumulative
    result = evaluate(stage(), measured(StageCounts(29, {"error_rate": errors(0.0005), "p95_latency_seconds": counts})))
    latency = gate(result, "p95_latency_seconds")
    assert latency.judge_error is None and latency.evidence is not None and not latency.evidence.regression
    assert result.verdict == "pass", result.reason
    judged = counts.upto(29)
    assert np.isnan(judged.canary[3]).all() and np.isnan(judged.stable[7]).all()
    assert np.isfinite(judged.canary[4]).all()


def test_only_buckets_both_tracks_have_in_every_interval_so_far_vote() -> None:
    """A new canary version drops the 0.1 s bucket at interval 10: checks before it compare at
    0.1 and 0.25, checks after it only at 0.25 (chosen from the intervals so far alone)."""
    counts = buckets()
    counts.shared[10:, 0] = False
    assert counts.upto(9).boundaries == (0.1, 0.25)
    assert counts.upto(10).boundaries == (0.25,) == counts.upto(29).boundaries
    result = evaluate(stage(), measured(StageCounts(29, {"error_rate": errors(0.0005), "p95_latency_seconds": counts})))
    assert gate(result, "p95_latency_seconds").judge_error is None


def test_no_shared_bucket_at_all_is_a_judge_error_that_holds() -> None:
    counts = buckets()
    counts.shared[:, :2] = False
    result = evaluate(stage(), measured(StageCounts(29, {"error_rate": errors(0.0005), "p95_latency_seconds": counts})))
    latency = gate(result, "p95_latency_seconds")
    assert "no latency bucket boundary is shared by both tracks" in latency.judge_error
    assert latency.status == "hold" and gate(result, "error_rate").evidence is not None


def test_a_check_before_the_first_interval_ended_has_no_evidence() -> None:
    result = evaluate(stage(), measured(StageCounts(-1)))
    assert all(g.evidence is None and g.judge_error is None for g in result.gates)


def test_one_reading_judged_at_each_check_computes_each_gates_path_once() -> None:
    """A grid's checks share one reading (StageCounts.at): the e-process is computed once and
    each check reads its own interval, exactly as a reading of its own would give."""
    whole = StageCounts(29, {"error_rate": errors(0.008), "p95_latency_seconds": buckets()})
    first = evaluate(stage(), measured(whole.at(12), 0.008))
    evaluate(stage(), measured(whole.at(20), 0.008))
    assert len(whole.memo) == 2  # one GateJudge per gate, shared
    alone = RateCounts(*(a[:13] for a in (whole.gates["error_rate"].canary_events,
                                           whole.gates["error_rate"].canary_exposure,
                                           whole.gates["error_rate"].stable_events,
                                           whole.gates["error_rate"].stable_exposure)), source="test")
    own = evaluate(stage(), measured(StageCounts(12, {"error_rate": alone, "p95_latency_seconds": buckets(13)}), 0.008))
    assert gate(first, "error_rate").evidence == gate(own, "error_rate").evidence
