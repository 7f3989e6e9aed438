"""Sample ratio mismatch: is the canary getting the share of requests the route gives it?

What a mismatch means here: the canary's requests are not the population the stable ones are
(clients stuck to a track, retries routed on one side, a router not applying the weight, header
traffic counted as weighted): the judge's comparison is not apples to apples. It holds the check
and warns; on its own it never rolls back (rollout/analysis/judging.py).

Why not a per-request test. Lindon & Malek's multinomial e-test ("Anytime-Valid Inference For
Multinomial Count Data", NeurIPS 2022), which this module ran before, assumes every request is
routed independently. Real traffic is routed per connection and pod (keep-alive clients, a pod's
rate wandering with its load), so request counts are overdispersed: on the `noisy` replay
scenario (each pod's rate jittered by 30 % per scrape) a share of 10.01 % against a weight of
10 % gave an e-value near 1e9, and a healthy release was held forever. Any point null also
flags a meaningless 0.1 % difference once there are enough requests.

The test. H0: "the canary's share of weighted requests is within TOLERANCE of each track's share
of the weight": the band [low, high] with high - p0 = p0 - low = TOLERANCE x min(p0, 1 - p0) (8 to
12 % at a 10 % weight; 40 to 60 % at 50 %). Intervals are pooled into blocks of at least
`min_requests` = ceil(1 / (TOLERANCE x min(p0, 1 - p0))) requests (50 at 10 %), a block closing
as soon as it has them: a rule on the request totals alone, never on how they split. Each block
casts two votes, "share above high" and "share below low", and each side is a sign test by
betting (the interval game of rollout/analysis/judge.py with z = +1 for a vote, -1 otherwise:
its stakes, its change-point mixture, its warm-up). The e-value is the mean of the two sides'.

Validity. The assumption is that a block's canary share lands above the band at most half the
time, and below it at most half the time, given the past: the share's conditional median is in
the band. Then E[z | past] <= 0 on each side, each side's wealth is a nonnegative
supermartingale, so is their mean, and Ville's inequality gives P(ever >= 1/alpha) <= alpha.
Nothing is assumed about how large the noise is, nor about its shape beyond the median: per-pod
jitter, connection clustering and bursts of one client are fine as long as they do not push the
share outside the band more often than not. For per-request routing (gateway-api, istio) the
assumption is a theorem: given the block's total n, the canary count is Binomial(n, p0), whose
median lies within floor(n p0) and ceil(n p0), and min_requests makes n (high - p0) >= 1 and
n (p0 - low) >= 1, so P(share > high) <= P(count > median) <= 1/2, and likewise below.

Power: a vote pays at most 1 + MAX_BET per block (a median test uses signs, not sizes), so a gross
mismatch is flagged after about 15 blocks (7.5 minutes of 30 s intervals at alpha 0.001), and a
share just outside the band takes as long as its blocks need to land outside it more often
than not. What that buys: no assumption about the size of the noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from rollout.analysis.judge import LOG_CAP, bet_log_e_paths

SRM_ALPHA = 0.001  # a mismatch blocks promotion until a person looks: rare by design
# the canary's share may be off by a fifth of the smaller track's share (8-12 % at a 10 % weight):
# wider than what per-pod noise moves a block's median, narrower than the mismatches that matter
# (header testers counted as weighted, a router that ignores the weight, sticky clients)
TOLERANCE = 0.2


def share_band(expected_share: float, tolerance: float = TOLERANCE) -> tuple[float, float]:
    """(low, high): the canary shares H0 allows, symmetric around the weight."""
    if not 0 < expected_share < 1:
        raise ValueError(f"expected_share must be between 0 and 1 exclusive (got {expected_share})")
    if not 0 < tolerance < 1:
        raise ValueError(f"tolerance must be between 0 and 1 exclusive (got {tolerance})")
    half = tolerance * min(expected_share, 1 - expected_share)
    return expected_share - half, expected_share + half


def min_block_requests(expected_share: float, tolerance: float = TOLERANCE) -> int:
    """Requests a block needs before it votes: n (high - p0) >= 1, so a binomial share's median is
    inside the band (see the module docstring)."""
    _, high = share_band(expected_share, tolerance)
    return math.ceil(1.0 / (high - expected_share) - 1e-9)


@dataclass(frozen=True)
class SampleRatio:
    """The test at one check: the measured and expected canary share, the band, the votes, and
    the e-value."""

    share: float | None  # measured canary share of weighted requests so far (None: none yet)
    expected: float
    e_value: float  # at this check
    e_max: float  # the largest so far (the verdict is sticky: the comparison was broken)
    alpha: float
    canary_requests: float
    stable_requests: float
    low: float = math.nan  # the band H0 allows
    high: float = math.nan
    blocks: int = 0  # blocks that voted so far (after the warm-up)
    above: int = 0  # of them, with a share above the band
    below: int = 0  # ... below it

    @property
    def mismatch(self) -> bool:
        return self.e_max >= 1.0 / self.alpha

    def summary(self) -> str:
        shown = "no requests yet" if self.share is None else f"{self.share:.2%}"
        verdict = "sample ratio mismatch" if self.mismatch else "canary share as configured"
        return (f"{verdict}: canary share of weighted requests {shown}, configured {self.expected:.2%}, "
                f"allowed {self.low:.2%}-{self.high:.2%} ({self.canary_requests:.0f} canary / "
                f"{self.stable_requests:.0f} stable requests; {self.blocks} blocks, {self.above} above and "
                f"{self.below} below the band; e-value {self.e_value:.3g}, stage max {self.e_max:.3g}, "
                f"mismatch at {1 / self.alpha:g})")


def _voting(canary_requests: ArrayLike, stable_requests: ArrayLike,
            warmup: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(canary, stable, mask of the intervals that count): finite, non-negative counts on both
    tracks, after the warm-up."""
    xc = np.asarray(canary_requests, dtype=float)
    xs = np.asarray(stable_requests, dtype=float)
    if xc.shape != xs.shape or xc.ndim != 1:
        raise ValueError(f"canary and stable requests must be 1-D and of one shape: {xc.shape} vs {xs.shape}")
    with np.errstate(invalid="ignore"):
        use = np.isfinite(xc) & np.isfinite(xs) & (xc >= 0) & (xs >= 0)
    use[: max(0, int(warmup))] = False
    return xc, xs, use


def block_votes(canary_requests: ArrayLike, stable_requests: ArrayLike, expected_share: float,
                tolerance: float = TOLERANCE, warmup: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(above, below): per interval, +1 / -1 at an interval that closes a block whose share is /
    is not above (below) the band, 0 elsewhere. Unusable intervals (NaN, negative) and the first
    `warmup` intervals join no block."""
    return _votes(*_voting(canary_requests, stable_requests, warmup), expected_share, tolerance)


def _votes(xc: np.ndarray, xs: np.ndarray, use: np.ndarray, expected_share: float,
           tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    low, high = share_band(expected_share, tolerance)
    need = min_block_requests(expected_share, tolerance)
    above, below = np.zeros(xc.size), np.zeros(xc.size)
    canary = total = 0.0
    for i in np.flatnonzero(use):
        canary += xc[i]
        total += xc[i] + xs[i]
        if total >= need:  # the block closes on its size alone
            share = canary / total
            above[i] = 1.0 if share > high else -1.0
            below[i] = 1.0 if share < low else -1.0
            canary = total = 0.0
    return above, below


class SampleRatioTest:
    """The test over one reading's intervals, computed once and readable at any of them (a grid's
    checks share it; every value at interval k depends on intervals 0..k alone). `path` is log E
    after each interval: the mean of the above-band and below-band sign tests."""

    def __init__(self, canary_requests: ArrayLike, stable_requests: ArrayLike, expected_share: float, *,
                 tolerance: float = TOLERANCE, warmup: int = 0, alpha: float = SRM_ALPHA):
        self.expected, self.alpha = expected_share, alpha
        self.low, self.high = share_band(expected_share, tolerance)
        xc, xs, use = _voting(canary_requests, stable_requests, warmup)
        above, below = _votes(xc, xs, use, expected_share, tolerance)
        sides = bet_log_e_paths(np.stack([above, below]), warmup=warmup)
        self.path = np.logaddexp(sides[0], sides[1]) - math.log(2.0)
        self.running_max = np.maximum.accumulate(self.path) if self.path.size else self.path
        self.blocks, self.above, self.below = np.cumsum(above != 0), np.cumsum(above > 0), np.cumsum(below > 0)
        # the share shown counts the requests the votes count
        self.canary_cum = np.cumsum(np.where(use, xc, 0.0))
        self.stable_cum = np.cumsum(np.where(use, xs, 0.0))

    def at(self, index: int) -> SampleRatio:
        """The test once interval `index` has ended (intervals 0..index)."""
        if index < 0 or self.path.size == 0:
            return SampleRatio(None, self.expected, 1.0, 1.0, self.alpha, 0.0, 0.0, self.low, self.high)
        index = min(index, self.path.size - 1)
        nc, ns = float(self.canary_cum[index]), float(self.stable_cum[index])
        return SampleRatio(
            share=nc / (nc + ns) if nc + ns > 0 else None, expected=self.expected,
            e_value=math.exp(min(float(self.path[index]), LOG_CAP)),
            e_max=math.exp(min(float(self.running_max[index]), LOG_CAP)),
            alpha=self.alpha, canary_requests=nc, stable_requests=ns, low=self.low, high=self.high,
            blocks=int(self.blocks[index]), above=int(self.above[index]), below=int(self.below[index]),
        )
