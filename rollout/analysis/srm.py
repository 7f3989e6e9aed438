"""Sample ratio mismatch: is the canary getting the share of requests the route gives it?

Lindon & Malek, "Anytime-Valid Inference For Multinomial Count Data" (NeurIPS 2022): the
Dirichlet-multinomial mixture of the multinomial likelihood against the point null of the
configured allocation is a nonnegative martingale under the null, so by Ville's inequality
P(ever >= 1/alpha) <= alpha however often it is looked at. With two tracks the multinomial is a
binomial and the Dirichlet a Beta: each weighted request goes to the canary with probability
p0 (the route's weight) independently of the others, and after x_c canary and x_s stable
requests

    E = B(a + x_c, b + x_s) / B(a, b) / (p0^x_c (1 - p0)^x_s),  a = K p0, b = K (1 - p0),

the Bayes factor of a Beta prior centred on the null (concentration K) against the null. Counts
per interval are sums of requests, so the e-value at each interval's end is the per-request
martingale read at a stopping time: still valid.

What a mismatch means here: the canary's requests are not the population the stable ones are
(clients stuck to a track, retries routed on one side, a router not applying the weight, header
traffic counted as weighted): the judge's comparison is not apples to apples. It holds the check
and warns; on its own it never rolls back (rollout/analysis/judging.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

_lgamma = np.vectorize(math.lgamma, otypes=[float])


def betaln(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """log B(a, b) (numpy only: scipy is not a runtime dependency)."""
    return _lgamma(a) + _lgamma(b) - _lgamma(np.add(a, b))


SRM_ALPHA = 0.001  # a mismatch blocks promotion until a person looks: rare by design
CONCENTRATION = 100.0  # prior sd of the share ~ sqrt(p0 (1 - p0) / 101): a tenth of the share at p0 = 0.5


@dataclass(frozen=True)
class SampleRatio:
    """The test at one check: the measured and expected canary share, and the e-value."""

    share: float | None  # measured canary share of weighted requests so far (None: none yet)
    expected: float
    e_value: float  # at this check
    e_max: float  # the largest so far (the verdict is sticky: the comparison was broken)
    alpha: float
    canary_requests: float
    stable_requests: float

    @property
    def mismatch(self) -> bool:
        return self.e_max >= 1.0 / self.alpha

    def summary(self) -> str:
        shown = "no requests yet" if self.share is None else f"{self.share:.2%}"
        verdict = "sample ratio mismatch" if self.mismatch else "canary share as configured"
        return (f"{verdict}: canary share of weighted requests {shown}, configured {self.expected:.2%} "
                f"({self.canary_requests:.0f} canary / {self.stable_requests:.0f} stable requests; e-value "
                f"{self.e_value:.3g}, stage max {self.e_max:.3g}, mismatch at {1 / self.alpha:g})")


def srm_log_e_path(canary_requests: ArrayLike, stable_requests: ArrayLike, expected_share: float,
                   concentration: float = CONCENTRATION) -> np.ndarray:
    """log E after each interval, from the intervals' request counts (NaN: skipped, on both
    tracks, as the judge skips them). expected_share in (0, 1)."""
    if not 0 < expected_share < 1:
        raise ValueError(f"expected_share must be between 0 and 1 exclusive (got {expected_share})")
    xc = np.asarray(canary_requests, dtype=float)
    xs = np.asarray(stable_requests, dtype=float)
    if xc.shape != xs.shape:
        raise ValueError(f"canary and stable requests differ in shape: {xc.shape} vs {xs.shape}")
    usable = _usable(xc, xs)
    cc = np.cumsum(np.where(usable, xc, 0.0))
    cs = np.cumsum(np.where(usable, xs, 0.0))
    a, b = concentration * expected_share, concentration * (1 - expected_share)
    return betaln(a + cc, b + cs) - betaln(a, b) - cc * math.log(expected_share) - cs * math.log1p(-expected_share)


def _usable(xc: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Intervals that count, on both tracks: finite, non-negative request counts."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(xc) & np.isfinite(xs) & (xc >= 0) & (xs >= 0)


def sample_ratio(canary_requests: ArrayLike, stable_requests: ArrayLike, expected_share: float, index: int,
                 alpha: float = SRM_ALPHA) -> SampleRatio:
    """The test once interval `index` has ended (intervals 0..index of the arrays)."""
    xc = np.asarray(canary_requests, dtype=float)[: index + 1]
    xs = np.asarray(stable_requests, dtype=float)[: index + 1]
    path = srm_log_e_path(xc, xs, expected_share) if xc.size else np.zeros(0)
    usable = _usable(xc, xs)  # the intervals the e-value counted: the share shown is of the same requests
    nc, ns = float(xc[usable].sum()), float(xs[usable].sum())
    return SampleRatio(
        share=nc / (nc + ns) if nc + ns > 0 else None, expected=expected_share,
        e_value=math.exp(min(float(path[-1]), 690.0)) if path.size else 1.0,
        e_max=math.exp(min(float(path.max()), 690.0)) if path.size else 1.0,
        alpha=alpha, canary_requests=nc, stable_requests=ns,
    )
