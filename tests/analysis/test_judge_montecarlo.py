"""The judge's promise, checked by simulation: over many healthy stages per null (the same
version on both tracks, with the noise real pods make: 30 s error bursts per pod, cold canary
pods, per-pod latency jitter, overdispersed errors, one much noisier stable pod), the chance
that any judged gate ever declares a regression stays at or below the stage's alpha, however
often it is looked at; and a real regression is declared within minutes.

Each stage runs through the product's own path at the recommended policy's check interval,
warm-up and alphas: the e-processes (`rate_log_e_paths`, `latency_quantile_log_e_path`) and
the decision (`first_crossing` with the canary-events guard), the functions GateJudge calls.
Seeds are fixed, so the test is reproducible; the boundary null below would show an e-process
that lost its validity (an off-by-one in the mixture, a wrong null share).
"""

from __future__ import annotations

import numpy as np
import pytest
from support.judge_sim import (
    ALPHA,
    BOUNDARIES,
    GATES,
    INTERVAL,
    WARMUP,
    Scenario,
    clopper_pearson,
    crossings,
    quantile_paths,
    simulate,
)

from rollout.analysis.judge import first_crossing, latency_quantile_log_e_path, rate_log_e_paths

STAGE_ALPHA = ALPHA * len(GATES)  # the stage's budget: each judged gate spends ALPHA of it
PER_MIN = 60 // INTERVAL
STAGES, INTERVALS = 400, 6 * 60 * PER_MIN  # 6-hour stages, a look every check interval


def test_latency_batch_is_the_product_path() -> None:
    sim = simulate(Scenario("x", mean_canary=0.04, pod_jitter=0.1), 3, 200, np.random.default_rng(3))
    paths, slow = quantile_paths(sim, 0.2, 0.95, WARMUP)
    for i in range(3):
        path, canary_slow = latency_quantile_log_e_path(sim["cb"][i].astype(float), sim["sb"][i].astype(float),
                                                        BOUNDARIES,
                                                        0.2, 0.95, warmup=WARMUP)
        np.testing.assert_allclose(paths[i], path, atol=1e-9)
        np.testing.assert_array_equal(slow[i], canary_slow)


HEALTHY = [
    Scenario("base"),  # 20 vs 180 req/s, 0.05 % errors, P95 ~0.11 s
    Scenario("noisy", noisy=True),  # shared diurnal/bursty traffic, wandering error level, incidents
    Scenario("low-traffic", canary_rps=1.0, stable_rps=9.0),
    Scenario("bursts", burst_per_hour=4.0, burst_errors=0.8),
    Scenario("cold-canary", cold_minutes=10),
    Scenario("pod-jitter", pod_jitter=0.2),
    Scenario("overdispersion", overdispersion=1.0),
    Scenario("noisy-stable-pod", noisy_stable_pod=True, burst_per_hour=1.0),
]


@pytest.mark.parametrize("scenario", HEALTHY, ids=[s.name for s in HEALTHY])
def test_false_detections_over_many_healthy_stages_stay_within_alpha(scenario: Scenario) -> None:
    sim = simulate(scenario, STAGES, INTERVALS, np.random.default_rng(20261129))
    found = crossings(sim)
    false = int(np.any(np.stack(list(found.values())) >= 0, axis=0).sum())
    low, high = clopper_pearson(false, STAGES)
    assert false / STAGES <= STAGE_ALPHA, (scenario.name, false, {k: int((v >= 0).sum()) for k, v in found.items()})
    print(f"{scenario.name}: {false}/{STAGES} stages with a false detection (95% CI {low:.4f}-{high:.4f})")


def test_the_old_per_event_judge_fails_the_burst_null() -> None:
    """Why the judge bets per interval: the per-event likelihood ratios declare most healthy
    stages with per-pod bursts (the simulator's bursts are strong enough to show it)."""
    sim = simulate(Scenario("bursts", burst_per_hour=1.0), 50, INTERVALS, np.random.default_rng(5))
    assert (crossings(sim, method="event")["errors"] >= 0).sum() > 25


def test_at_the_boundary_the_rate_of_false_detections_is_still_bounded() -> None:
    """The hardest null: identical tracks and tolerance 0, so each interval's bet is fair (the
    canary's share has exactly the null mean) and the e-process is a martingale, not a
    supermartingale with room to spare. Ville's inequality still bounds the chance of ever
    crossing 1/alpha by alpha: not significantly above it over 1000 stages."""
    alpha = 0.05
    sim = simulate(Scenario("identical", q_stable=0.002, q_canary=0.002), 1000, 720, np.random.default_rng(7))
    paths = rate_log_e_paths(sim["xc"], sim["nc"], sim["xs"], sim["ns"], tolerance=0.0)
    false = sum(first_crossing(p, alpha) is not None for p in paths)
    low, _ = clopper_pearson(false, 1000)
    assert low <= alpha, false
    assert false > 0  # at the boundary crossings do happen: the bound is tight, not vacuous


def test_a_step_fault_is_declared_within_minutes() -> None:
    """Canary errors 3 % against 0.05 % on stable, 20 req/s on the canary, from minute 70:
    declared within 7 minutes in every one of 200 stages at the recommended 30 s interval (the
    issue asked for 5: one bounded bet per interval needs about 9 intervals; docs/judge.md)."""
    onset = 70 * PER_MIN
    sim = simulate(Scenario("step", q_canary=0.03, fault_start=onset), 200, onset + 60 * PER_MIN,
                   np.random.default_rng(11))
    first = crossings(sim)["errors"]
    assert np.all(first >= onset) and np.all(first - onset < 7 * PER_MIN), np.bincount(np.maximum(first - onset, 0))


def test_a_doubled_p95_under_the_thresholds_is_declared_within_minutes() -> None:
    """A 90 ms service whose canary P95 doubles to ~180 ms (still under the plan's 200 ms target):
    the latency judge declares it within 10 minutes of the warm-up's end in every one of 200
    stages, so it is never promoted."""
    sim = simulate(Scenario("p95x2", floor=0.015, mean_stable=0.025, mean_canary=0.05), 200, WARMUP + 60 * PER_MIN,
                   np.random.default_rng(12))
    first = crossings(sim)["latency"]
    assert np.all(first >= WARMUP) and np.all(first - WARMUP < 10 * PER_MIN), first


def test_a_canary_uniformly_ten_percent_slower_is_inside_the_tolerance() -> None:
    """tolerance 0.2 on the P95 means what it says: a canary 10 % slower everywhere (P95 1.1x)
    is not a regression."""
    sim = simulate(Scenario("slower", mean_canary=0.033, canary_floor=0.022, pod_jitter=0.1), STAGES, INTERVALS,
                   np.random.default_rng(13))
    assert (crossings(sim)["latency"] >= 0).sum() <= STAGE_ALPHA * STAGES
