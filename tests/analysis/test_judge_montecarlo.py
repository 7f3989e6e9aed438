"""The judge's promise, checked by simulation: over 1000 healthy stages per scenario, the chance
that any judged gate ever declares a regression stays at or below the stage's alpha (0.01,
shared by the four judged gates as the stage files do), however often it is looked at; and a
real regression is declared within minutes.

Each stage is 12 hours of 1-minute intervals through the product's own path: the e-process
(`rate_ratio_log_e_paths`, `latency_log_e_path`) and the decision (`first_crossing` with the
canary-events guard), the functions GateJudge calls. Seeds are fixed, so the test is
reproducible; it would fail if the e-process lost its validity (an off-by-one in the mixture,
a wrong boundary share), since the hardest null below sits exactly at the boundary.
"""

from __future__ import annotations

import numpy as np
import pytest
from support.judge_sim import (
    ALPHA,
    GATES,
    Scenario,
    clopper_pearson,
    crossings,
    latency_paths,
    simulate,
)

from rollout.analysis.judge import (
    first_crossing,
    latency_log_e_path,
    rate_ratio_log_e_paths,
)

STAGE_ALPHA = ALPHA * len(GATES)  # the stage's budget: each judged gate spends ALPHA of it
STAGES, INTERVALS = 1000, 720  # 12-hour stages checked every minute: 720 looks each


def test_latency_batch_is_the_product_path() -> None:
    sim = simulate(Scenario("x", mean_canary=0.04), 3, 200, np.random.default_rng(3))
    paths, slow = latency_paths(sim, 1.0)
    for i in range(3):
        path, canary_slow = latency_log_e_path(sim["cb"][i], sim["sb"][i], 1.0)
        np.testing.assert_allclose(paths[i], path, atol=1e-9)
        np.testing.assert_array_equal(slow[i], canary_slow)


HEALTHY = [
    Scenario("base"),  # 20 vs 180 req/s, 0.05 % errors, P95 ~0.11 s
    Scenario("noisy", noisy=True),  # shared diurnal/bursty traffic, wandering error level, incidents
    Scenario("low-traffic", canary_rps=1.0, stable_rps=9.0),
]


@pytest.mark.parametrize("scenario", HEALTHY, ids=[s.name for s in HEALTHY])
def test_false_detections_over_a_thousand_healthy_stages_stay_within_alpha(scenario: Scenario) -> None:
    sim = simulate(scenario, STAGES, INTERVALS, np.random.default_rng(20261129))
    found = crossings(sim)
    false = int(np.any(np.stack(list(found.values())) >= 0, axis=0).sum())
    low, high = clopper_pearson(false, STAGES)
    assert false / STAGES <= STAGE_ALPHA, (scenario.name, false, {k: int((v >= 0).sum()) for k, v in found.items()})
    print(f"{scenario.name}: {false}/{STAGES} stages with a false detection (95% CI {low:.4f}-{high:.4f})")


def test_at_the_boundary_the_rate_of_false_detections_is_still_bounded() -> None:
    """The hardest null: identical tracks and tolerance 0, so the e-process is a martingale,
    not a supermartingale with room to spare. Ville's inequality still bounds the chance of ever
    crossing 1/alpha by alpha: not significantly above it over 1000 stages."""
    alpha = 0.01
    sim = simulate(Scenario("identical", q_stable=0.002, q_canary=0.002), STAGES, INTERVALS, np.random.default_rng(7))
    paths = rate_ratio_log_e_paths(sim["xc"], sim["nc"], sim["xs"], sim["ns"], tolerance=0.0)
    false = sum(first_crossing(p, alpha) is not None for p in paths)
    low, _ = clopper_pearson(false, STAGES)
    assert low <= alpha, false
    assert false > 0  # at the boundary crossings do happen: the bound is tight, not vacuous


def test_a_step_fault_is_declared_within_three_minutes() -> None:
    """The issue's target: canary errors 3 % against 0.05 % on stable, 10 % of 200 req/s, from
    interval 60: declared within 3 one-minute intervals in every one of 200 stages."""
    sim = simulate(Scenario("step", q_canary=0.03, fault_start=60), 200, 120, np.random.default_rng(11))
    first = crossings(sim)["errors"]
    assert np.all(first >= 60) and np.all(first - 60 < 3), np.bincount(np.maximum(first - 60, 0))


def test_a_doubled_p95_under_the_thresholds_is_declared_within_minutes() -> None:
    """A 90 ms service whose canary P95 doubles to ~180 ms (still under the plan's 200 ms target):
    the latency judge declares it within 3 intervals in every one of 200 stages."""
    sim = simulate(Scenario("p95x2", floor=0.015, mean_stable=0.025, mean_canary=0.0575, fault_start=60),
                   200, 120, np.random.default_rng(12))
    first = crossings(sim)["latency"]
    assert np.all(first >= 60) and np.all(first - 60 < 3), first
