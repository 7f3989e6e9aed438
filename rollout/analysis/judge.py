"""The sequential canary-versus-stable judge's statistics: anytime-valid e-processes.

Pure functions, numpy only (no I/O, no state; docs/judge.md explains them for a release
engineer). Every result at interval t is a deterministic function of the per-interval counts
0..t, so a restarted bot recomputes exactly the same
evidence from the stage's counts.

What the bot runs (rollout/analysis/evidence.py's GateJudge), in the sections at the end:

* `rate_log_e_paths`: H0 "canary events (errors, failed workflows, fallbacks) per request are at
  most (1 + tolerance) x stable's, arriving in clusters of a common law" (bursts, retries and
  overdispersion allowed), by betting once per interval on the interval's canary share of events.
* `latency_quantile_log_e_path`: H0 "beyond stable's q-quantile, the canary's latency tail is at
  most stable's stretched by (1 + tolerance)" (so canary P95 <= (1 + tolerance) x stable's), by
  the same interval betting on requests slower than bucket boundaries.

Both mix constant bets and change-point starts, and skip the warm-up intervals; their validity
arguments are with them. The per-event likelihood-ratio e-process below (`rate_ratio_log_e_paths`)
is what the judge ran before: valid only if every request fails or is slow independently of
every other, which per-pod bursts and jitter break (docs/judge.md). It remains for
`ratio_estimate`'s confidence sequence (a description of the effect, not the decision) and for
the trade-off table of benchmarks/bench_judge.py (tests/support/judge_sim.py averages it over
the bucket boundaries for the old latency test).

Decision rule: declare a regression at the first interval t with E_t >= 1/alpha. By Ville's
inequality for a nonnegative supermartingale with E_0 = 1, P_H0(exists t: E_t >= 1/alpha) <= alpha,
however often one looks and whenever one stops (Ramdas, Gruenwald, Vovk, Shafer, "Game-theoretic
statistics and safe anytime-valid inference", Statistical Science 2023).

Model (Lindon, Sanden, Shirikian, "Rapid Regression Detection in Software Deployments through
Sequential Testing", KDD 2022, arXiv:2205.14762): per interval i, canary events x_ci among n_ci
exposures (requests) and stable x_si among n_si. Each request fails (or is slower than b)
independently given the past, with probabilities q_ci, q_si (Bernoulli/binomial), or events are
Poisson with means q_ci n_ci, q_si n_si. The ratio rho_i = q_ci / q_si is the parameter; the common
level q_si is a nuisance that may vary arbitrarily from interval to interval (traffic mix, load,
incidents shared by both tracks) and drops out.

Validity of one interval's likelihood ratio. With p_i(rho) = n_ci rho / (n_ci rho + n_si), the
canary's share of the interval's events is Binomial(x_i, p_i(rho)) under the Poisson model given
the total x_i = x_ci + x_si. The likelihood ratio of the alternative rho1 > rho0 against the
boundary rho0 = 1 + tolerance is

    L_i = (p_i(rho1)/p_i(rho0))^x_ci * ((1-p_i(rho1))/(1-p_i(rho0)))^x_si = A_i^x_ci * B_i^x_si,

and E[L_i | past, n_i] = exp(q_si n_ci n_si (rho1-rho0)/(n_ci rho1+n_si) * (rho_i/rho0 - 1))
under the Poisson model: = 1 at rho_i = rho0 and < 1 for every rho_i < rho0, whatever q_si is.
(Equivalently, conditionally on x_i: L_i is increasing in x_ci because rho1 > rho0, and
Binomial(x_i, p) is stochastically increasing in p, so rho_i < rho0 only lowers E[L_i | x_i].)
Under the binomial model (at most one error per request; the realistic one) E[L_i | past, n_i] =
(1 + q_ci(A_i-1))^n_ci (1 + q_si(B_i-1))^n_si <= exp(q_ci n_ci (A_i-1) + q_si n_si (B_i-1)) by
1+u <= e^u, which is the Poisson value, so <= 1 whenever q_ci <= rho0 q_si: binomial
(without-replacement-like) sampling only makes the test more conservative. Careful: that holds
for the unconditional expectation. Conditionally on the interval total x_i, binomial sampling
gives Fisher's noncentral hypergeometric law with odds ratio psi = rho (1 - q_s)/(1 - rho q_s),
slightly ABOVE rho when rho > 1, so at the exact boundary E[L_i | x_i] can exceed 1 (1.26 for
q_s = 0.3, 20 vs 180 requests; 1.00003 for q_s = 0.0005; see the tests). For a truly healthy
canary (rho_i = 1) the conditional law is the central hypergeometric, which is below
Binomial(x_i, n_ci/(n_ci+n_si)) in convex order (Hoeffding 1963), so there the conditional
argument holds too. The supermartingale property only needs the unconditional one.

So the product M_t(rho1) = prod_{i<=t} L_i is a nonnegative supermartingale under the composite
H0 "rho_i <= rho0 for every i" (the ratio may even wander below rho0); a mixture over rho1 with
weights fixed in advance (the prior) is one too, and so is a mixture over the interval s at which
the product starts (a change point), since each M_{s:t} is 1 before s and a supermartingale
after. Requirements: the exposures of interval i (request counts) do not depend on that
interval's outcomes (client retries triggered by errors violate this), requests are independent
given the shared conditions (pod-local shocks on one track are not: see docs/judge.md), and
counts are raw counter differences (integers), not extrapolated `increase()` values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
StartPrior = Literal["changepoint", "unbounded", "early", "stage"]

__all__ = [
    "CS_OFFSETS",
    "DEFAULT_PRIOR",
    "LOG_CAP",
    "Prior",
    "first_crossing",
    "histogram_quantile",
    "log_e_paths",
    "rate_ratio_log_e_paths",
    "ratio_estimate",
    "start_log_weights",
]

LOG_CAP = 690.0  # exp(690) ~ 1e300: e-values are reported capped, log_e is exact


@dataclass(frozen=True)
class Prior:
    """Mixing distribution over alternatives rho1 = rho0 * ratio (ratio > 1), fixed in advance.

    The mixture e-value is sum_k w_k M_t(rho0 * ratio_k). A grid that is log-spaced is a discrete
    log-uniform prior; costs: a point with weight w needs log(1/w) extra nats of evidence.
    """

    ratios: tuple[float, ...]
    weights: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.ratios) == 0 or len(self.ratios) != len(self.weights):
            raise ValueError("prior needs as many weights as ratios, at least one")
        if any(not (r > 1.0 and math.isfinite(r)) for r in self.ratios):
            raise ValueError("prior ratios (rho1/rho0) must be finite and > 1")
        if any(not (w > 0.0) for w in self.weights):
            raise ValueError("prior weights must be > 0")
        if abs(sum(self.weights) - 1.0) > 1e-9:
            raise ValueError("prior weights must sum to 1")

    @classmethod
    def log_grid(cls, low: float, high: float, points: int, tilt: float = 0.0) -> Prior:
        """`points` ratios log-spaced from `low` to `high`; weights proportional to ratio**-tilt
        (tilt > 0 puts more weight on small effects, which need it most)."""
        ratios = np.geomspace(low, high, points)
        weights = ratios ** (-tilt)
        weights = weights / weights.sum()
        return cls(tuple(float(r) for r in ratios), tuple(float(w) for w in weights))

    @property
    def log_ratios(self) -> FloatArray:
        return np.log(np.asarray(self.ratios, dtype=float))

    @property
    def log_weights(self) -> FloatArray:
        return np.log(np.asarray(self.weights, dtype=float))


# 12 alternatives from 1.2x to 500x the boundary, weights proportional to ratio^-0.5 (more on
# small effects, which need the help; huge effects have evidence to spare). Chosen by the power
# study summarised in docs/judge.md.
DEFAULT_PRIOR = Prior.log_grid(1.2, 500.0, 12, tilt=0.5)

# Two-sided offsets (multiples of the CS grid step 0.05 in log rho) for the confidence sequence.
CS_STEP = 0.05
CS_OFFSETS: tuple[int, ...] = (2, 4, 8, 14, 22, 32, 46, 64, 92)  # x 0.05 = 0.1 .. 4.6 nats


# --------------------------------------------------------------------------- core


# The change-point prior's horizon: log-uniform over the first HORIZON intervals (a week of 30 s
# checks, 70 days of 5-minute ones: longer than any stage), a tenth of the spread after it.
HORIZON = 20160
_AFTER_HORIZON = 0.05  # of the total mass; 0.45 is spread over 1..HORIZON, 0.5 is on the start


def _not_started_within_horizon(t: FloatArray) -> FloatArray:
    """N(t), the prior mass of starts after interval t (1-based), for the 'changepoint' prior:
    0.05 + 0.45 (1 - ln(t + 1) / ln(H + 1)) up to H, then 0.05 / (1 + ln((t + 1) / (H + 1)))."""
    within = _AFTER_HORIZON + (0.5 - _AFTER_HORIZON) * (1.0 - np.log(t + 1.0) / math.log(HORIZON + 1.0))
    after = _AFTER_HORIZON / (1.0 + np.log((np.maximum(t, HORIZON) + 1.0) / (HORIZON + 1.0)))
    return np.where(t <= HORIZON, within, after)


def start_log_weights(intervals: int, start_prior: StartPrior) -> tuple[FloatArray, FloatArray]:
    """Log weights log(pi_s) of the interval s (0-based) at which evidence starts, and
    log(1 - sum_{s'<=t} pi_s') (the mass not yet started, worth e-value 1) for t = 0..T-1.

    'stage': all mass at the stage start (classic mixture martingale).
    'changepoint' (the judge's): half at the stage start (a release bad from its first request),
    0.45 log-uniform over the first HORIZON intervals, pi_s = 0.45 ln((s+1)/s) / ln(H+1) (1-based
    s), and 0.05 spread after them. A fault that appears after s healthy intervals costs about
    ln s + ln ln(H+1) + ln(1/0.45) nats (9.7 at 6 h of 30 s intervals) instead of the evidence
    against the alternatives that the healthy stretch accumulated (which grows linearly with s).
    The ln s is what any test that does not know the onset pays (Lorden 1971: detection delay ~
    log(false-alarm horizon) / information per interval); ln ln(H+1) = 2.3 nats is the price of
    a horizon of H intervals, which a stage has.
    'unbounded': half at the start, half in log time with no horizon, pi_s = (G(s+1) - G(s)) / 2,
    G(s) = 1 - 1/(1 + ln s): ln s + 2 ln(1 + ln s) + ln 2 nats, 11.3 at 6 h (the iterated log is
    the price of not bounding the horizon); the judge's prior before, kept for the trade-off table
    of benchmarks/bench_judge.py, as is
    'early': half at the start, half spread as 1/(s(s+1)), the one before that: ln(2 s (s+1)),
    13.9 nats at 6 h (docs/judge.md "Late faults").
    """
    t = np.arange(1, intervals + 1, dtype=float)  # 1-based interval number
    if start_prior == "stage":
        log_pi = np.full(intervals, -np.inf)
        if intervals:
            log_pi[0] = 0.0
        return log_pi, np.full(intervals, -np.inf)
    if start_prior == "early":
        pi = 0.5 / (t * (t + 1.0))
        if intervals:
            pi[0] += 0.5
        return np.log(pi), np.log(0.5 / (t + 1.0))
    if start_prior == "changepoint":
        not_yet = _not_started_within_horizon(t)
    elif start_prior == "unbounded":
        not_yet = 0.5 / (1.0 + np.log(t + 1.0))  # (1 - G(t + 1)) / 2: the half not started after t
    else:
        raise ValueError(f"start_prior must be 'changepoint', 'unbounded', 'early' or 'stage' (got {start_prior!r})")
    pi = np.empty(intervals)
    if intervals:
        pi[0] = 1.0 - not_yet[0]
        pi[1:] = not_yet[:-1] - not_yet[1:]
    return np.log(pi), np.log(not_yet)


def _mix_alternatives(log_s: FloatArray, log_weights: ArrayLike, log_rest: FloatArray,
                      start_prior: StartPrior) -> FloatArray:
    """log of the prior-weighted sum over alternatives (axis -2) of the change-point mixtures,
    plus the start prior's mass not yet spent (the e-process is 1 there)."""
    log_s = log_s + np.asarray(log_weights, dtype=float)[:, None]
    m = np.max(log_s, axis=-2)
    m = np.where(np.isfinite(m), m, 0.0)
    log_e = m + np.log(np.sum(np.exp(log_s - m[..., None, :]), axis=-2))
    if start_prior != "stage":
        log_e = np.logaddexp(log_e, log_rest)
    return log_e

def _logsumexp(a: FloatArray, axis: int, log_w: FloatArray | None = None) -> FloatArray:
    if log_w is not None:
        a = a + log_w
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    return np.squeeze(m, axis=axis) + np.log(np.sum(np.exp(a - m), axis=axis))


def log_e_paths(
    canary_events: ArrayLike,
    total_events: ArrayLike,
    p0: ArrayLike,
    log_ratios: FloatArray,
    log_weights: FloatArray,
    start_prior: StartPrior = "changepoint",
) -> FloatArray:
    """Vectorised log E_t for every interval t (time is the last axis of the inputs).

    canary_events, total_events, p0: shape (..., T); p0_i = n_ci rho0/(n_ci rho0 + n_si) (0 for a
    skipped interval, which then has no events either). Returns log E_t, shape (..., T).
    log L_ik = x_ci log(g_k) - x_i log(1 + p0_i (g_k - 1)), g_k = rho1_k/rho0, and
    E_t = sum_k w_k sum_s pi_s prod_{s<=i<=t} L_ik + (1 - sum_{s<=t} pi_s).
    """
    xc = np.asarray(canary_events, dtype=float)[..., None, :]
    x = np.asarray(total_events, dtype=float)[..., None, :]
    p = np.asarray(p0, dtype=float)[..., None, :]
    lg = np.asarray(log_ratios, dtype=float)[:, None]
    log_l = xc * lg - x * np.log1p(p * np.expm1(lg))  # (..., K, T)
    cum = np.cumsum(log_l, axis=-1)  # log prod_{i<=t} L_ik
    T = cum.shape[-1]
    log_pi, log_rest = start_log_weights(T, start_prior)
    if start_prior == "stage":
        log_s = cum
    else:  # log sum_{s<=t} pi_s exp(C_t - C_{s-1}) = C_t + logcumsumexp_s(log pi_s - C_{s-1})
        a = np.empty_like(cum)
        a[..., 0] = log_pi[0]
        np.subtract(log_pi[1:], cum[..., :-1], out=a[..., 1:])
        log_s = cum + np.logaddexp.accumulate(a, axis=-1)
    log_e = _mix_alternatives(log_s, log_weights, log_rest, start_prior)
    # Before the first event every likelihood ratio is exactly 1, so E is exactly 1: make the
    # arithmetic say so (no 1 - 1e-16 from the log-space sums).
    return np.where(np.cumsum(x[..., 0, :], axis=-1) > 0, log_e, 0.0)


def _prepare(
    canary_counts: ArrayLike,
    canary_exposure: ArrayLike,
    stable_counts: ArrayLike,
    stable_exposure: ArrayLike,
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, NDArray[np.bool_]]:
    """Broadcast float arrays with unusable intervals (a NaN, or no exposure on a track) zeroed,
    and the mask of usable intervals."""
    arrays = np.broadcast_arrays(*[np.atleast_1d(np.asarray(a, dtype=float)) for a in
                                   (canary_counts, canary_exposure, stable_counts, stable_exposure)])
    xc, nc, xs, ns = arrays
    # An interval tells nothing about the ratio unless both tracks had exposure. Skipping it
    # (L_i = 1) depends on exposures/missingness only, not on the outcomes: validity is kept.
    # A negative or infinite count (a counter reset not differenced upstream) is as unusable as
    # a NaN: skipped, never an exception (the judge must not stop a tick on bad data).
    with np.errstate(invalid="ignore"):
        ok = (np.isfinite(xc) & np.isfinite(nc) & np.isfinite(xs) & np.isfinite(ns) & (nc > 0) & (ns > 0)
              & (xc >= 0) & (xs >= 0))
    z = 0.0
    return np.where(ok, xc, z), np.where(ok, nc, z), np.where(ok, xs, z), np.where(ok, ns, z), ok


def rate_ratio_log_e_paths(
    canary_counts: ArrayLike,
    canary_exposure: ArrayLike,
    stable_counts: ArrayLike,
    stable_exposure: ArrayLike,
    tolerance: float = 0.5,
    prior: Prior | None = None,
    start_prior: StartPrior = "changepoint",
) -> FloatArray:
    """Batch form of the rate-ratio e-process: log E_t for arrays of shape (..., T) (broadcast),
    e.g. (stages, T) in a Monte Carlo or (boundaries, T) for latency."""
    prior = DEFAULT_PRIOR if prior is None else prior
    rho0 = 1.0 + tolerance
    xc, nc, xs, ns, _ = _prepare(canary_counts, canary_exposure, stable_counts, stable_exposure)
    if xc.shape[-1] == 0:
        return np.zeros(xc.shape)
    return log_e_paths(xc, xc + xs, _boundary_share(nc, ns, rho0), prior.log_ratios,
                       prior.log_weights, start_prior)


def _boundary_share(nc: FloatArray, ns: FloatArray, rho0: float) -> FloatArray:
    den = nc * rho0 + ns
    return np.divide(nc * rho0, den, out=np.zeros_like(den), where=den > 0)


# --------------------------------------------------------------------------- estimates


def _strata(xc: FloatArray, x: FloatArray, nc: FloatArray, ns: FloatArray) -> tuple[FloatArray, FloatArray, float]:
    """Merge intervals with events by exposure ratio r = n_c/n_s (exact: the conditional
    likelihood depends on an interval only through r and its counts). Returns log r, x, X_c."""
    use = x > 0
    r = nc[use] / ns[use]
    if r.size == 0:
        return np.zeros(0), np.zeros(0), 0.0
    ur, inv = np.unique(r, return_inverse=True)
    xs_ = np.bincount(inv, weights=x[use]).astype(float)
    return np.log(ur), xs_, float(xc[use].sum())


def _log_partition(theta: FloatArray, log_r: FloatArray, x: FloatArray) -> FloatArray:
    """F(theta) = sum_i x_i log(1 + r_i e^theta) for each theta (1-D)."""
    # log1p of an outer product: exact, and several times faster than logaddexp. theta is
    # bounded (|theta| <= ~14 on the CS grid), so e^theta * r cannot overflow.
    return np.log1p(np.multiply.outer(np.exp(theta), np.exp(log_r))) @ x


def _binned(log_r: FloatArray, x: FloatArray, gap: float = 0.02) -> tuple[FloatArray, FloatArray, float]:
    """Merge strata whose log r are within a bin, at the x-weighted mean c_b of the bin, and
    return (c, X_b, G). With f(u) = log(1 + e^u) convex and f'' <= 1/4, Jensen and Taylor give
    F_binned(theta) <= F(theta) <= F_binned(theta) + G for every theta, G = sum x_i (log r_i -
    c_b)^2 / 8; the bin width is chosen so that G <= gap nats. The CS uses the lower bound of
    its e-value (F_binned and G), so binning only ever widens it (stays conservative)."""
    X = float(x.sum())
    if log_r.size <= 32 or X <= 0:
        return log_r, x, 0.0
    width = math.sqrt(8.0 * gap / X)  # |log r_i - c_b| < width, so G <= X width^2 / 8 = gap
    key = np.floor(log_r / width).astype(np.int64)
    uk, inv = np.unique(key, return_inverse=True)
    xb = np.bincount(inv, weights=x, minlength=uk.size).astype(float)
    c = np.bincount(inv, weights=x * log_r, minlength=uk.size) / xb
    G = float(np.sum(x * (log_r - c[inv]) ** 2) / 8.0)
    return c, xb, G


def _conditional_mle(log_r: FloatArray, x: FloatArray, xc_tot: float) -> float | None:
    """MLE of a common rho given the per-interval totals (nuisance-free, Mantel-Haenszel-like):
    solves X_c = sum_i x_i r_i rho/(1 + r_i rho). 0 if no canary events, inf if no stable ones.
    The score is decreasing in theta = log rho (the log-likelihood is concave): Newton steps
    from the pooled estimate, kept inside a bisection bracket, converge in a few iterations."""
    x_tot = float(x.sum())
    if x_tot <= 0:
        return None
    if xc_tot <= 0:
        return 0.0
    if xc_tot >= x_tot:
        return math.inf
    lo, hi = -50.0, 50.0
    # start from the pooled odds against the event-weighted exposure ratio
    theta = math.log(xc_tot / (x_tot - xc_tot)) - float(np.sum(x * log_r) / x_tot)
    theta = min(hi, max(lo, theta))
    for _ in range(100):
        share = 1.0 / (1.0 + np.exp(-(theta + log_r)))
        score = xc_tot - float(np.sum(x * share))
        if score > 0:
            lo = theta
        else:
            hi = theta
        slope = float(np.sum(x * share * (1.0 - share)))
        step = theta + score / slope if slope > 0 else math.nan
        theta = step if lo < step < hi else 0.5 * (lo + hi)
        if abs(score) < 1e-9 * max(1.0, xc_tot) or hi - lo < 1e-10:
            break
    return math.exp(theta)


def _confidence_sequence(
    log_r: FloatArray, x: FloatArray, xc_tot: float, alpha: float, center: float | None
) -> tuple[float, float]:
    """Anytime-valid CS for a constant rho: {rho : E_t(rho) < 1/alpha} where E_t(rho) is the
    two-sided mixture (offsets +-CS_OFFSETS * CS_STEP in log rho, equal weights) of the
    conditional likelihood ratios against rho. Each such mixture is a martingale under that
    rho, so P(exists t: rho_true not in CS_t) <= alpha. Evaluated on a log grid of step
    CS_STEP and rounded outward one step (conservative). Range 1e-4..1e4; beyond: 0 / inf."""
    if x.size == 0 or float(x.sum()) <= 0:
        return 0.0, math.inf
    info_r, info_x = log_r, x
    log_r, x, gap = _binned(log_r, x)
    offs = np.asarray(CS_OFFSETS, dtype=int)
    offsets = np.concatenate([-offs[::-1], offs])
    log_w = np.full(offsets.size, -math.log(offsets.size))
    limit = round(math.log(1e4) / CS_STEP)
    # centre the grid on the estimate; half-width adaptively up to the global limit
    if center is None or center == 0.0 or not math.isfinite(center):
        c = 0
        half = limit
    else:
        c = round(math.log(center) / CS_STEP)
        c = max(-limit, min(limit, c))
        info = float(np.sum(info_x * np.exp(info_r) * center / (1 + np.exp(info_r) * center) ** 2))
        half = int(min(2 * limit, max(40, 12.0 / math.sqrt(max(info, 1e-12)) / CS_STEP)))
    level = math.log(1.0 / alpha)
    while True:
        lo_j, hi_j = max(-limit, c - half), min(limit, c + half)
        m = int(offs.max())
        theta = CS_STEP * np.arange(lo_j - m, hi_j + m + 1, dtype=float)
        F = _log_partition(theta, log_r, x)
        idx = np.arange(m, m + hi_j - lo_j + 1)  # positions of the candidate grid in `theta`
        terms = xc_tot * (offsets[None, :] * CS_STEP) - F[idx[:, None] + offsets[None, :]] + F[idx][:, None]
        log_e = _logsumexp(terms, axis=1, log_w=log_w) - gap  # a lower bound of log E(rho)
        inside = np.nonzero(log_e < level)[0]
        if inside.size == 0:  # cannot happen for a sensible grid (the MLE is inside); be safe
            return 0.0, math.inf
        first, last = int(inside[0]), int(inside[-1])
        touches_lo = first == 0 and lo_j > -limit
        touches_hi = last == idx.size - 1 and hi_j < limit
        if (touches_lo or touches_hi) and half < 2 * limit:
            half *= 2
            continue
        low = 0.0 if (first == 0 and lo_j <= -limit) else math.exp(CS_STEP * (lo_j + first - 1))
        high = math.inf if (last == idx.size - 1 and hi_j >= limit) else math.exp(CS_STEP * (lo_j + last + 1))
        return low, high


def ratio_estimate(
    canary_counts: ArrayLike, canary_exposure: ArrayLike, stable_counts: ArrayLike, stable_exposure: ArrayLike,
    alpha: float,
) -> tuple[float | None, float, float]:
    """(conditional MLE of a common canary/stable ratio, and its anytime-valid (1 - alpha)
    confidence sequence low, high) over these intervals. None / (0, inf) without events."""
    xc, nc, xs, ns, _ = _prepare(canary_counts, canary_exposure, stable_counts, stable_exposure)
    log_r, x_strata, xc_tot = _strata(xc, xc + xs, nc, ns)
    rho_hat = _conditional_mle(log_r, x_strata, xc_tot)
    low, high = _confidence_sequence(log_r, x_strata, xc_tot, alpha, rho_hat)
    return rho_hat, low, high


def first_crossing(log_path: FloatArray, alpha: float, canary_cum: FloatArray | None = None,
                   min_events: float = 0) -> int | None:
    """The first interval whose log E reaches log(1/alpha) with at least `min_events` canary
    events so far (a guard that only removes rejections), or None."""
    crossing = log_path >= math.log(1.0 / alpha)
    if min_events > 0 and canary_cum is not None:
        crossing &= canary_cum >= min_events
    hits = np.nonzero(crossing)[0]
    return int(hits[0]) if hits.size else None


# --------------------------------------------------------------------------- latency


def histogram_quantile(q: float, boundaries: ArrayLike, cumulative: ArrayLike) -> float | None:
    """Prometheus-style quantile of a cumulative `le` histogram (linear within a bucket, first
    bucket from 0; a quantile in +Inf returns the highest finite boundary). None if empty."""
    b = np.asarray(boundaries, dtype=float)
    c = np.asarray(cumulative, dtype=float)  # len(b) + 1, the last is +Inf (the total)
    total = float(c[-1])
    if not total > 0:
        return None
    rank = q * total
    j = int(np.searchsorted(c, rank, side="left"))
    if j >= b.size:
        return float(b[-1])
    lower_b = 0.0 if j == 0 else float(b[j - 1])
    lower_c = 0.0 if j == 0 else float(c[j - 1])
    width = float(c[j]) - lower_c
    if width <= 0:
        return float(b[j])
    return lower_b + (float(b[j]) - lower_b) * (rank - lower_c) / width


# --------------------------------------------------------------------------- interval betting
#
# What the bot runs (GateJudge): one bet per interval, not one likelihood ratio per event.
#
# Production breaks the per-request independence the likelihood ratios above need: a pod loses
# a dependency and fails half its requests for 30 s; a pod's latency wanders with its GC and
# its neighbours. Under the per-event test one such burst on the canary multiplies the evidence
# by the likelihood ratio of hundreds of "independent" errors (one 300-error minute on a healthy
# canary: an e-value near 1e246, tests/analysis/test_judge.py). Here each interval contributes one bounded factor, whatever happened inside it.
#
# The game (Shafer & Vovk, testing by betting; Waudby-Smith & Ramdas, "Estimating means of
# bounded random variables by betting", JRSS-B 2023). For interval i with events on either
# track, Y_i = x_ci / (x_ci + x_si) is the canary's share of the interval's events and
# p0_i = n_ci rho0 / (n_ci rho0 + n_si) the largest share the null allows. The bettor stakes a
# fraction mu of its wealth on "the share is above p0_i":
#
#     factor_i = 1 + mu z_i,  z_i = Y_i / p0_i - 1 in [-1, 1/p0_i - 1],  0 <= mu <= MAX_BET < 1,
#
# so a factor is at least 1 - MAX_BET > 0 and at most 1 + MAX_BET (1/p0_i - 1): one interval,
# burst or not, moves the wealth by a bounded amount (with 10 % canary traffic and tolerance
# 0.5, p0_i = 1/7: at most x6.7 at MAX_BET 0.95). Intervals with no events, with no exposure on a track, or
# before the warm-up have z_i = 0 (factor 1): that depends on exposures, time and whether
# events happened, not on how they split.
#
# Validity: under H0 the interval's share has E[Y_i | past, x_i > 0] <= p0_i, so E[factor_i |
# past] <= 1 for every mu in [0, 1), and products of factors are nonnegative supermartingales.
# The share bound holds in the burst model "events arrive in clusters (a burst, a retry storm,
# one request that fails many sub-calls) and the clusters of each track arrive with the same
# law per request": given the interval's cluster sizes s_1..s_m, each cluster is the canary's
# independently with probability p_i = n_ci q_ci / (n_ci q_ci + n_si q_si) <= p0_i (q: clusters
# per request, q_ci <= rho0 q_si under H0), so E[Y_i | sizes] = sum_k p_i s_k / sum_k s_k = p_i.
# Independent requests are the special case of clusters of size 1 (the conditional law is then
# the binomial share of the Poisson model; for binomial sampling and a healthy canary, rho = 1,
# the central hypergeometric has exactly the mean n_ci / (n_ci + n_si)). Nothing is assumed
# about the cluster sizes, how many there are or how they vary in time: that is what makes
# bursts and overdispersion harmless. Pods of a track need the same law (pods are exchangeable
# within and across tracks): one much noisier STABLE pod only lowers the canary's share (safe);
# one noisier CANARY pod is a canary that behaves worse, which the judge is there to find.
#
# The bet is chosen from past data only: the e-process is a mixture, with weights fixed in
# advance, over constant bets mu_k (BETS) and over the interval s at which betting starts (the
# change-point mixture of `start_log_weights`). A mixture of constant-bet wealths is the wealth
# of a single bettor whose bet at interval i is the wealth-weighted average of the mu_k, a
# predictable function of the past (the "mixture" betting strategy of Waudby-Smith & Ramdas,
# section 5; it tracks the best constant bet in hindsight within log(1/w_k) nats, where the
# adaptive aGRAPA/ONS rules need a tuning window that the change point would have to restart).
# Each constant-bet product started at s is 1 before s and a supermartingale after, so the
# mixture is a nonnegative supermartingale with E_0 = 1 and Ville's inequality gives
# P_H0(exists t: E_t >= 1/alpha) <= alpha.


@dataclass(frozen=True)
class Bets:
    """The constant fractions of wealth mixed by the interval e-process, with prior weights."""

    fractions: tuple[float, ...]
    weights: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.fractions or len(self.fractions) != len(self.weights):
            raise ValueError("bets need as many weights as fractions, at least one")
        if any(not (0.0 < f < 1.0) for f in self.fractions):
            raise ValueError("bet fractions must be in (0, 1): a factor 1 - fraction stays > 0")
        if any(not (w > 0.0) for w in self.weights) or abs(sum(self.weights) - 1.0) > 1e-9:
            raise ValueError("bet weights must be > 0 and sum to 1")

    @classmethod
    def even(cls, *fractions: float) -> Bets:
        return cls(tuple(fractions), tuple(1.0 / len(fractions) for _ in fractions))


# Chosen with benchmarks/bench_judge.py (the trade-off table in docs/benchmarks.md): the largest
# bet bounds what one burst can do; the smaller ones keep evidence growing for a small effect
# whose intervals are often below p0 (few events per interval).
MAX_BET = 0.95
BETS = Bets.even(0.1, 0.25, 0.5, 0.8, MAX_BET)


def bet_log_e_paths(z: ArrayLike, bets: Bets = BETS, start_prior: StartPrior = "changepoint",
                    warmup: int = 0) -> FloatArray:
    """log E_t of the interval-betting e-process for per-interval scores z (time last; z >= -1,
    E[z_i | past] <= 0 under H0, 0 for an interval that does not vote). The first `warmup`
    intervals carry no evidence and the change-point prior starts after them."""
    z = np.asarray(z, dtype=float)
    out = np.zeros(z.shape)
    T = z.shape[-1]
    w = max(0, min(int(warmup), T))
    if T - w <= 0:
        return out
    zz = np.clip(np.nan_to_num(z[..., w:], nan=0.0, posinf=0.0, neginf=0.0), -1.0, None)
    mu = np.asarray(bets.fractions, dtype=float)[:, None]
    log_l = np.log1p(mu * zz[..., None, :])  # (..., K, T')
    log_e = _mix_paths(log_l, np.log(np.asarray(bets.weights, dtype=float)), start_prior)
    out[..., w:] = np.where(np.cumsum(zz != 0, axis=-1) > 0, log_e, 0.0)
    return out


def _mix_paths(log_l: FloatArray, log_weights: FloatArray, start_prior: StartPrior) -> FloatArray:
    """log of sum_k w_k sum_s pi_s prod_{s<=i<=t} L_ik (+ the mass not started yet), for
    per-interval log factors log_l of shape (..., K, T): the mixtures of log_e_paths."""
    T = log_l.shape[-1]
    log_pi, log_rest = start_log_weights(T, start_prior)
    if start_prior == "stage":
        log_s = np.cumsum(log_l, axis=-1)
    else:  # log S_t = log L_t + log(S_{t-1} + pi_t), S = sum_{s<=t} pi_s prod_{s<=i<=t} L_i: one
        # pass over time on small arrays (the cumulative-sum form needs a logaddexp.accumulate
        # over the whole (stages, bets, T) array, several times slower in a Monte Carlo)
        steps = np.ascontiguousarray(np.moveaxis(log_l, -1, 0))  # time first: each step contiguous
        state = np.full(log_l.shape[:-1], -np.inf)
        for t in range(T):
            state = steps[t] + np.logaddexp(state, log_pi[t])
            steps[t] = state
        log_s = np.moveaxis(steps, 0, -1)
    log_e = _mix_alternatives(log_s, log_weights, log_rest, start_prior)
    return log_e


def share_scores(canary_events: ArrayLike, canary_exposure: ArrayLike, stable_events: ArrayLike,
                 stable_exposure: ArrayLike, tolerance: float) -> FloatArray:
    """z_i = Y_i / p0_i - 1 per interval (0: no events, or an unusable interval: NaN, negative
    or infinite counts, no exposure on a track); broadcasts, time last."""
    xc, nc, xs, ns, _ = _prepare(canary_events, canary_exposure, stable_events, stable_exposure)
    p0 = _boundary_share(nc, ns, 1.0 + tolerance)
    x = xc + xs
    share = np.divide(xc, x, out=np.zeros_like(x), where=x > 0)
    return np.where((x > 0) & (p0 > 0), np.divide(share, p0, out=np.ones_like(p0), where=p0 > 0) - 1.0, 0.0)


def rate_log_e_paths(canary_events: ArrayLike, canary_exposure: ArrayLike, stable_events: ArrayLike,
                     stable_exposure: ArrayLike, tolerance: float = 0.5, *, bets: Bets = BETS,
                     start_prior: StartPrior = "changepoint", warmup: int = 0) -> FloatArray:
    """The burst-robust rate test: H0 "per request, canary events (errors, failed workflows)
    arrive at most (1 + tolerance) x stable's rate, in clusters of a common law", by betting on
    each interval's canary share of events. log E_t, shape (..., T)."""
    z = share_scores(canary_events, canary_exposure, stable_events, stable_exposure, tolerance)
    return bet_log_e_paths(z, bets, start_prior, warmup)


# --------------------------------------------------------------------------- latency quantiles
#
# H0 (per interval i, for both tracks' latency laws in that interval, pods mixed as served):
# beyond stable's q-quantile Q_s, the canary's tail is at most stable's stretched by (1 + tol):
#
#     P_c(T > (1 + tol) x) <= P_s(T > x)   for every x >= Q_s.
#
# At x = Q_s this gives P_c(T > (1 + tol) Q_s) <= 1 - q, i.e. the canary's q-quantile is at most
# (1 + tol) x stable's: a canary whose P95 is more than 1.2x stable's is outside H0, and so is
# one whose P99 alone blew up (a heavier tail beyond the P95). A canary uniformly 10 % slower
# is inside H0 for tol >= 0.1, whatever its share of slow requests.
#
# Test (the rate game above on slow requests): for a canary-side bucket boundary b, the
# canary's events are its requests slower than b, the stable's its requests slower than
# b / (1 + tol), the null share p0_i = n_ci / (n_ci + n_si) (tolerance already in the
# boundary). b / (1 + tol) is rarely a boundary: stable's count above it is read off the linear
# interpolation of its cumulative buckets (Prometheus' histogram_quantile assumption). Where the
# density does not increase across a bucket (every bucket above the mode: the tail), the
# survival function is convex there and the chord lies above it, so the interpolated stable
# tail is at least the true one: conservative. A boundary votes in interval i only if, over the
# intervals before i (warm-up included), (a) b / (1 + tol) is at or above stable's estimated
# q-quantile (the region H0 speaks about) and (b) both tracks have served enough requests to
# place their q-quantile: (1 - q) x requests >= MIN_TAIL_EVENTS on each (too few events on
# either track: no vote), both predictable. Few slow requests AT the boundary are no reason to
# abstain: a bet on a share is valid whatever the number of events (a canary slower than every
# stable request is the clearest evidence there is). Each
# boundary's e-process bets per interval as the rate test does, so per-pod jitter (a pod
# slower for a minute: all its slow requests at once) is one bounded factor, as a burst is.
# The gate's e-process is the equal-weight average of the boundaries' e-processes.
#
# Missing data: an interval whose +Inf counts are missing on a track, or whose buckets are not
# cumulative, does not vote; a boundary absent from either track's layout in that interval (a
# bucket added or removed by the new version) does not vote, nor does one whose interpolation
# needs an absent stable boundary.

MIN_TAIL_EVENTS = 10


def _interpolated_cumulative(cum: FloatArray, bounds: FloatArray, x: float) -> FloatArray:
    """Per row, the cumulative count at x by linear interpolation between the boundaries around
    it (0 at 0); NaN if one of them is missing. cum: (..., B) finite boundaries only."""
    k = int(np.searchsorted(bounds, x, side="left"))  # bounds[k-1] < x <= bounds[k]
    if k >= bounds.size:
        return np.full(cum.shape[:-1], np.nan)
    upper = cum[..., k]
    if x == bounds[k]:
        return upper
    lower_b = 0.0 if k == 0 else float(bounds[k - 1])
    lower = np.zeros(cum.shape[:-1]) if k == 0 else cum[..., k - 1]
    return lower + (upper - lower) * (x - lower_b) / (float(bounds[k]) - lower_b)


def _exclusive_cumsum(a: FloatArray) -> FloatArray:
    """Sum over the intervals before each one (time last): what is known when it starts."""
    out = np.zeros_like(a)
    np.cumsum(a[..., :-1], axis=-1, out=out[..., 1:])
    return out


def latency_scores(canary_bucket_counts: ArrayLike, stable_bucket_counts: ArrayLike, boundaries: ArrayLike,
                   tolerance: float, quantile: float, warmup: int = 0) -> tuple[FloatArray, FloatArray]:
    """(z of shape (..., B, T): each finite boundary's per-interval score, 0 where it does not
    vote; the canary's slow requests per interval at the voting boundaries (..., T), for the
    events guard). Buckets: (..., T, B + 1); leading axes are independent stages."""
    cb = np.asarray(canary_bucket_counts, dtype=float)
    sb = np.asarray(stable_bucket_counts, dtype=float)
    bounds = np.asarray(boundaries, dtype=float)
    B = bounds.size
    if cb.ndim < 2 or sb.shape != cb.shape or cb.shape[-1] != B + 1 or B == 0:
        lead = cb.shape[:-1] if cb.ndim >= 2 else (0,)
        return np.zeros((*lead[:-1], B, lead[-1])), np.zeros(lead)
    with np.errstate(invalid="ignore"):
        nc, ns = cb[..., -1], sb[..., -1]
        row_ok = np.isfinite(nc) & np.isfinite(ns) & (nc > 0) & (ns > 0)
        for a in (cb, sb):  # cumulative where present; NaN columns are a layout without that bucket
            row_ok &= ~np.any(np.diff(a, axis=-1) < -1e-9, axis=-1) & ~np.any(a < 0, axis=-1)
            row_ok &= ~np.any(np.isinf(a), axis=-1) & ~np.any(a > a[..., -1:] + 1e-9, axis=-1)
    T = cb.shape[-2]
    z = np.zeros((*cb.shape[:-2], B, T))
    slow = np.zeros(cb.shape[:-1])
    p0 = np.divide(nc, nc + ns, out=np.zeros_like(nc), where=row_ok)
    for j, b in enumerate(bounds):
        xc = nc - cb[..., j]
        xs = ns - _interpolated_cumulative(sb[..., :-1], bounds, float(b) / (1.0 + tolerance))
        usable = row_ok & np.isfinite(xc) & np.isfinite(xs)
        xc, xs = np.where(usable, np.maximum(xc, 0.0), 0.0), np.where(usable, np.maximum(xs, 0.0), 0.0)
        # predictable voting: from the intervals before this one only (warm-up included)
        past_ns = _exclusive_cumsum(np.where(usable, ns, 0.0))
        past_nc = _exclusive_cumsum(np.where(usable, nc, 0.0))
        at_or_above_q = _exclusive_cumsum(xs) <= (1.0 - quantile) * past_ns
        enough = np.minimum(past_nc, past_ns) * (1.0 - quantile) >= MIN_TAIL_EVENTS
        votes = usable & at_or_above_q & enough
        x = xc + xs
        share = np.divide(xc, x, out=np.zeros_like(x), where=x > 0)
        zj = np.divide(share, p0, out=np.ones_like(p0), where=p0 > 0) - 1.0
        z[..., j, :] = np.where(votes & (x > 0), zj, 0.0)
        slow = np.where(votes, np.maximum(slow, xc), slow)
    if warmup > 0:
        z[..., :warmup] = 0.0
        slow[..., :warmup] = 0.0
    return z, slow


def latency_quantile_log_e_path(canary_bucket_counts: ArrayLike, stable_bucket_counts: ArrayLike,
                                boundaries: ArrayLike, tolerance: float = 0.2, quantile: float = 0.95, *,
                                bets: Bets = BETS, start_prior: StartPrior = "changepoint",
                                warmup: int = 0) -> tuple[FloatArray, FloatArray]:
    """(log E_t of the latency quantile test, the canary's running count of slow requests at
    the voting boundaries). Buckets: (intervals, boundaries + 1) per-interval increments of the
    cumulative `le` buckets, +Inf last; NaN where a track's layout lacks a bucket."""
    z, slow = latency_scores(canary_bucket_counts, stable_bucket_counts, boundaries, tolerance, quantile, warmup)
    B, T = z.shape[-2:]
    if T == 0 or B == 0:
        return np.zeros(slow.shape), np.zeros(slow.shape)
    # a boundary that never votes has log E = 0 throughout: compute only the others (exact),
    # the silent ones as one row of log E = 0 with their total weight
    live = np.flatnonzero(np.any(z != 0.0, axis=tuple(a for a in range(z.ndim) if a != z.ndim - 2)))
    if not live.size:
        return np.zeros(slow.shape), np.cumsum(slow, axis=-1)
    per_b = bet_log_e_paths(z[..., live, :], bets, start_prior, warmup)
    weights = np.full((live.size, 1), -math.log(B))
    if live.size < B:
        per_b = np.concatenate([per_b, np.zeros((*per_b.shape[:-2], 1, T))], axis=-2)
        weights = np.concatenate([weights, [[math.log((B - live.size) / B)]]])
    return _logsumexp(per_b, axis=-2, log_w=weights), np.cumsum(slow, axis=-1)
