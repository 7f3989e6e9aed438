"""rollout.analysis.judge, the statistics, through GateJudge (rollout.analysis.evidence: what the
bot runs for a gate) and the path functions: edge cases, the validity argument checked exactly
(scipy's binomial and hypergeometric laws), statelessness, the canary-events guard, and the
anytime-valid confidence sequence's coverage."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from support.judge_sim import BOUNDARIES, COARSE_BUCKETS, Scenario, simulate

from rollout.analysis import judge as j
from rollout.analysis.evidence import Evidence, GateJudge, LatencyCounts, RateCounts
from rollout.model import Judge


def rates(xc, nc, xs, ns, tolerance: float = 0.5, alpha: float = 0.01, min_events: int = 0) -> GateJudge:  # noqa: ANN001
    counts = RateCounts(*(np.asarray(a, dtype=float) for a in (xc, nc, xs, ns)), source="test")
    return GateJudge("error_rate", Judge(tolerance=tolerance, min_canary_events=min_events), alpha, counts)


def latency(canary, stable, tolerance: float = 0.2, alpha: float = 0.01, warmup: int = 0) -> GateJudge:  # noqa: ANN001
    counts = LatencyCounts(tuple(BOUNDARIES), np.asarray(canary, dtype=float), np.asarray(stable, dtype=float), "test")
    return GateJudge("p95_latency_seconds", Judge(tolerance=tolerance, quantile=0.95, min_canary_events=0), alpha,
                     counts, warmup_intervals=warmup)


def final(judge: GateJudge) -> Evidence:
    return judge.at(judge.intervals - 1)


def assert_finite(judge: GateJudge) -> None:
    evidence = final(judge)
    for name in ("e_value", "e_max", "ratio_low", "ratio_high"):
        assert not math.isnan(getattr(evidence, name)), name
    assert not np.any(np.isnan(judge.path))
    assert 0.0 <= evidence.ratio_low <= evidence.ratio_high


# --------------------------------------------------------------------------- edge cases


def test_no_events_on_either_track_is_exactly_no_evidence() -> None:
    n = np.full(2880, 1200.0)
    evidence = final(rates(np.zeros(2880), n, np.zeros(2880), 9 * n))
    assert (evidence.e_value, evidence.e_max) == (1.0, 1.0)
    assert not evidence.regression and evidence.ratio is None
    assert (evidence.ratio_low, evidence.ratio_high) == (0.0, math.inf)


def test_an_interval_without_requests_on_a_track_carries_no_evidence() -> None:
    assert final(rates([5, 7, 3], [0, 0, 0], [1, 2, 4], [100, 100, 100])).e_value == 1.0
    full = rates([9, 2], [100, 100], [0, 1], [0, 900]).path
    assert full[-1] == pytest.approx(rates([0, 2], [0, 100], [0, 1], [0, 900]).path[-1])


def test_nan_intervals_carry_no_evidence() -> None:
    """A NaN interval (a counter drop, a missing instant) is a likelihood ratio of 1: the path
    does not move there."""
    judge = rates([1.0, np.nan, 2.0, 0.0], [100.0, 100.0, np.nan, 100.0], [1, 1, 1, 1], [900] * 4)
    assert_finite(judge)
    assert judge.path[1] == pytest.approx(judge.path[0], abs=1e-12)
    assert judge.path[2] == pytest.approx(judge.path[1], abs=1e-12)
    assert judge.path[3] != pytest.approx(judge.path[2], abs=1e-12)  # a usable interval moves it


def test_bad_counts_are_skipped_never_raised() -> None:
    """A negative or infinite count (a reset not differenced upstream), a bucket row that is not
    cumulative, or arrays of the wrong shape: no evidence from them, and no exception, since an
    exception would stop the tick (and the threshold gates with it)."""
    for bad in (-1.0, np.inf, np.nan):
        path = j.rate_log_e_paths([1, bad, 1], [10, 10, 10], [0, 0, 0], [90, 90, 90])
        assert path[1] == pytest.approx(path[0], abs=1e-12) and np.all(np.isfinite(path))
    rows = np.array([[5, 3, 10]] * 3, dtype=float)  # 5 then 3: not cumulative
    path, _ = j.latency_quantile_log_e_path(rows, rows, [0.1, 0.2])
    assert np.all(path == 0.0)
    path, _ = j.latency_quantile_log_e_path(np.zeros((3, 10)), np.zeros((2, 10)), BOUNDARIES)
    assert path.shape == (3,) and np.all(path == 0.0)


def test_a_bucket_only_one_track_has_does_not_vote() -> None:
    """A new version adds or drops a bucket: in those intervals the column is NaN on one track.
    Only boundaries present on both tracks vote, and nothing raises."""
    sim = simulate(Scenario("slow", mean_canary=0.06), 1, 40, np.random.default_rng(8))
    cb, sb = sim["cb"][0].astype(float), sim["sb"][0].astype(float)
    at = int(np.flatnonzero(BOUNDARIES == 0.2)[0])
    cb[20:, at] = np.nan  # the canary's layout has no 0.2 s bucket from interval 20
    z, _ = j.latency_scores(cb, sb, BOUNDARIES, 0.2, 0.95)
    assert np.all(z[at, 20:] == 0.0) and np.any(z[at, :20] != 0.0)
    # the stable side of the next boundary, b / 1.2 just above 0.2 s, interpolates from 0.2 s:
    # it needs 0.2 too
    assert BOUNDARIES[at] < BOUNDARIES[at + 1] / 1.2 < BOUNDARIES[at + 1]
    sb2 = sb.copy()
    sb2[20:, at] = np.nan
    z2, _ = j.latency_scores(sim["cb"][0].astype(float), sb2, BOUNDARIES, 0.2, 0.95)
    assert np.all(z2[at + 1, 20:] == 0.0) and np.any(z2[at + 1, :20] != 0.0)
    judge = latency(cb, sb)
    assert_finite(judge)
    nan_row = cb.copy()
    nan_row[25] = np.nan  # a whole missing row
    assert_finite(latency(nan_row, sb))


def test_three_intervals_by_hand() -> None:
    """The e-value after three intervals, computed by hand (catches a change-point start moved
    by one interval). 10 % of the requests on the canary, tolerance 0.5: p0 = 150/1050 = 1/7.
    Interval 1: 1 canary error, 0 stable: z = 7 - 1 = 6. Interval 2: 0 and 9: z = -1.
    Interval 3: 5 and 0: z = 6. Bets 0.1, 0.25, 0.5, 0.8, 0.95 (weights 1/5); change-point
    weights with N(t) = 0.05 + 0.45 (1 - ln(t + 1) / ln(20161)), the mass not started after t
    intervals: pi_1 = 1 - N(1) = 0.5314701, pi_2 = N(1) - N(2) = 0.0184088, pi_3 = N(2) - N(3) =
    0.0130613, not started after 3 intervals: N(3) = 0.4370598.
    E_3 = 1/5 sum_mu [pi_1 (1+6mu)(1-mu)(1+6mu) + pi_2 (1-mu)(1+6mu) + pi_3 (1+6mu)] + 0.4370598:
    mu=0.1: 1.2719139; 0.25: 2.5584359; 0.5: 4.3408237; 0.8: 3.6728406; 0.95: 1.2865622;
    mean 2.6261153, + 0.4370598 = 3.0631751."""
    path = j.rate_log_e_paths([1, 0, 5], [100, 100, 100], [0, 9, 0], [900, 900, 900], 0.5)
    assert math.exp(path[2]) == pytest.approx(3.0631751, abs=1e-6)
    # interval 1 alone: pi_1 x mean(1.6, 2.5, 4, 5.8, 6.7) + (1 - pi_1) = 2.6581868
    assert math.exp(path[0]) == pytest.approx(2.6581868, abs=1e-6)


@pytest.mark.parametrize("start_prior", ["changepoint", "unbounded", "early"])
def test_each_change_point_prior_is_a_probability_and_says_what_a_late_start_costs(start_prior) -> None:
    """The start weights and the mass not yet started add up to 1 at every interval (past the
    horizon too), every start has weight, and the cost of a fault after 6 h of 30 s intervals
    is what docs/judge.md quotes: 9.7 nats now, 11.3 unbounded, 13.9 early."""
    T = j.HORIZON + 5000
    log_pi, log_rest = j.start_log_weights(T, start_prior)
    pi = np.exp(log_pi)
    assert np.all(pi > 0) and np.allclose(np.cumsum(pi) + np.exp(log_rest), 1.0, atol=1e-12)
    assert -log_pi[720] == pytest.approx({"changepoint": 9.67, "unbounded": 11.33, "early": 13.86}[start_prior],
                                         abs=0.01)


def test_one_burst_moves_the_evidence_a_bounded_amount() -> None:
    """A canary pod fails half its requests for 30 s: 300 canary errors in one minute. The
    per-event likelihood ratios make that a regression beyond doubt; one bounded bet cannot."""
    n = np.full(120, 1200.0)
    xc, xs = np.zeros(120), np.zeros(120)
    xs[::3] = 5
    xc[50] = 300
    p0 = 1.5 * 1200 / (1.5 * 1200 + 9 * 1200)
    bet = final(rates(xc, n, xs, 9 * n))
    assert not bet.regression and bet.e_max <= 1 + j.MAX_BET * (1 / p0 - 1)
    assert j.rate_ratio_log_e_paths(xc, n, xs, 9 * n).max() > 100  # the old judge: e-value ~1e246


def test_warmup_intervals_carry_no_evidence() -> None:
    n = np.full(30, 1200.0)
    xc = np.zeros(30)
    xc[:10] = 40  # a cold pod failing for ten minutes
    path = j.rate_log_e_paths(xc, n, np.zeros(30), 9 * n, warmup=10)
    assert np.all(path == 0.0)
    assert j.rate_log_e_paths(xc, n, np.zeros(30), 9 * n, warmup=0).max() > math.log(400)


def test_random_edge_inputs_never_give_nan() -> None:
    rng = np.random.default_rng(11)
    for _ in range(200):
        t = int(rng.integers(1, 30))
        nc = rng.choice([0, 1, 2, 50, 1e6], t).astype(float)
        ns = rng.choice([0, 1, 9, 450, 1e7], t).astype(float)
        xc = np.minimum(rng.poisson(rng.choice([0, 0.5, 5, 1e4], t)), nc).astype(float)
        xs = np.minimum(rng.poisson(rng.choice([0, 0.5, 5, 1e4], t)), ns).astype(float)
        xc[rng.random(t) < 0.1] = np.nan
        assert_finite(rates(xc, nc, xs, ns, tolerance=float(rng.choice([0, 0.5, 2]))))


def test_a_few_canary_errors_with_none_on_stable() -> None:
    """With 10 % of the traffic each error lands on the canary with probability 0.1 if it is
    healthy: one, two or three canary-only errors are not a regression, six are."""
    n = np.full(60, 1200.0)

    def after(k: int) -> Evidence:
        xc = np.zeros(60)
        xc[:k] = 1
        return final(rates(xc, n, np.zeros(60), 9 * n))

    assert not any(after(k).regression for k in (1, 2, 3)) and after(6).regression
    assert after(4).e_value > after(3).e_value > after(2).e_value > 1.0


def test_more_canary_events_never_lower_the_evidence() -> None:
    rng = np.random.default_rng(3)
    nc, ns = rng.poisson(1200, 50).astype(float), rng.poisson(10800, 50).astype(float)
    xc, xs = rng.binomial(nc.astype(int), 0.001).astype(float), rng.binomial(ns.astype(int), 0.001).astype(float)
    more = xc.copy()
    more[20] += 3
    for test in (j.rate_ratio_log_e_paths, j.rate_log_e_paths):
        assert np.all(test(more, nc, xs, ns) >= test(xc, nc, xs, ns) - 1e-12)


def test_a_restarted_bot_recomputes_the_same_evidence() -> None:
    """E at interval t from the first t intervals is the t-th point of a longer run."""
    rng = np.random.default_rng(5)
    nc, ns = rng.poisson(1200, 300), rng.poisson(10800, 300)
    xc, xs = rng.binomial(nc, 0.002), rng.binomial(ns, 0.001)
    for start_prior in ("stage", "changepoint"):
        full = j.rate_ratio_log_e_paths(xc, nc, xs, ns, start_prior=start_prior)
        for t in (1, 17, 150, 300):
            part = j.rate_ratio_log_e_paths(xc[:t], nc[:t], xs[:t], ns[:t], start_prior=start_prior)
            assert part[-1] == pytest.approx(full[t - 1], abs=1e-9)
            bets = j.rate_log_e_paths(xc, nc, xs, ns, start_prior=start_prior, warmup=3)
            assert j.rate_log_e_paths(xc[:t], nc[:t], xs[:t], ns[:t], start_prior=start_prior,
                                      warmup=3)[-1] == pytest.approx(bets[t - 1], abs=1e-9)


def test_the_canary_events_guard_only_removes_rejections() -> None:
    n = np.full(60, 1200.0)
    xc = np.zeros(60)
    xc[:4] = 1  # four canary-only errors: the bare e-process crosses
    bare = final(rates(xc, n, np.zeros(60), 9 * n))
    guarded = final(rates(xc, n, np.zeros(60), 9 * n, min_events=5))
    assert bare.regression and not guarded.regression and guarded.e_max == bare.e_max
    xc[:8] = 1
    assert final(rates(xc, n, np.zeros(60), 9 * n, min_events=5)).crossed_interval == 4


def test_latency_edge_cases() -> None:
    every_request_fast = np.tile(np.array([100] * 10), (30, 1))
    assert final(latency(every_request_fast, 9 * every_request_fast)).e_value == 1.0
    nothing = final(latency(np.zeros((30, 10)), np.zeros((30, 10))))
    assert nothing.e_value == 1.0 and nothing.p95_stable is None and nothing.ratio is None


def test_histogram_quantile_like_prometheus() -> None:
    layout = np.array(COARSE_BUCKETS)  # a layout of its own: the cumulative counts below are per its buckets
    cumulative = np.array([0, 0, 50, 90, 95, 99, 100, 100, 100, 100], dtype=float)
    assert j.histogram_quantile(0.5, layout, cumulative) == pytest.approx(0.1)
    assert j.histogram_quantile(0.95, layout, cumulative) == pytest.approx(0.3)
    assert j.histogram_quantile(0.5, layout, np.zeros(10)) is None


# --------------------------------------------------------------------------- why it is valid


def likelihood_ratio(xc: np.ndarray, xs: np.ndarray, nc: float, ns: float, rho0: float, rho1: float) -> np.ndarray:
    p0, p1 = nc * rho0 / (nc * rho0 + ns), nc * rho1 / (nc * rho1 + ns)
    return (p1 / p0) ** xc * ((1 - p1) / (1 - p0)) ** xs


@pytest.mark.parametrize("q_stable", [0.0005, 0.05, 0.3])
@pytest.mark.parametrize("ratio", [1.0, 1.5])
@pytest.mark.parametrize("rho1", [1.6, 3.0, 50.0])
def test_one_interval_has_expected_likelihood_ratio_at_most_one(q_stable: float, ratio: float, rho1: float) -> None:
    """The module docstring's argument, by exact summation over the binomial laws (each request
    fails at most once): E[L] <= 1 whenever the canary is at most rho0 = 1.5 times worse."""
    nc, ns, rho0 = 20, 180, 1.5
    xc, xs = np.arange(nc + 1)[:, None], np.arange(ns + 1)[None, :]
    pmf = stats.binom.pmf(xc, nc, ratio * q_stable) * stats.binom.pmf(xs, ns, q_stable)
    assert float(np.sum(pmf * likelihood_ratio(xc, xs, nc, ns, rho0, rho1))) <= 1.0 + 1e-12


def test_conditionally_on_the_total_only_a_healthy_canary_keeps_the_bound() -> None:
    """Given an interval's total, binomial sampling is Fisher's noncentral hypergeometric: at the
    exact boundary E[L | total] exceeds 1 (so validity rests on the unconditional argument);
    for a healthy canary (central hypergeometric) it never does."""
    nc, ns, rho0, rho1, q = 20, 180, 1.5, 3.0, 0.3
    boundary = healthy = 0.0
    for total in range(1, 120):
        k = np.arange(max(0, total - ns), min(nc, total) + 1)
        lr = likelihood_ratio(k, total - k, nc, ns, rho0, rho1)
        odds = rho0 * (1 - q) / (1 - rho0 * q)
        boundary = max(boundary, float(np.sum(stats.nchypergeom_fisher.pmf(k, nc + ns, nc, total, odds) * lr)))
        healthy = max(healthy, float(np.sum(stats.hypergeom.pmf(k, nc + ns, nc, total) * lr)))
    assert boundary > 1.05 and healthy <= 1.0 + 1e-12


def test_the_confidence_sequence_covers_the_true_ratio_at_every_look() -> None:
    """A constant ratio of 2, looked at every 10 intervals of 300 stages: the sequence misses
    the truth at some look in at most about alpha of the stages."""
    rng = np.random.default_rng(99)
    misses = 0
    for _ in range(300):
        nc, ns = rng.poisson(1200, 120), rng.poisson(10800, 120)
        xc, xs = rng.binomial(nc, 0.002), rng.binomial(ns, 0.001)
        for t in range(10, 121, 10):
            _, low, high = j.ratio_estimate(xc[:t], nc[:t], xs[:t], ns[:t], alpha=0.01)
            if not low <= 2.0 <= high:
                misses += 1
                break
    assert misses <= 6  # expected <= 3


def test_estimates_of_a_clear_regression() -> None:
    sim = simulate(Scenario("bad", q_canary=0.03, mean_canary=0.07), 1, 20, np.random.default_rng(4))
    errors = final(rates(sim["xc"][0], sim["nc"][0], sim["xs"][0], sim["ns"][0]))
    assert errors.regression and errors.crossed_interval <= 4 and errors.ratio_low <= 60 <= errors.ratio_high
    slow = final(latency(sim["cb"][0], sim["sb"][0]))
    # the layout's boundary nearest stable's P95 (0.02 + 0.03 ln 20 = 0.110 s): 0.1154
    assert slow.regression and slow.boundary == 0.1154
    true_ratio = math.exp(-(0.1154 - 0.02) / 0.07) / math.exp(-(0.1154 - 0.02) / 0.03)
    assert slow.ratio_low <= true_ratio <= slow.ratio_high
