"""The judge on a gate: per-interval counts of both tracks in, the evidence at a check out.
Pure, no I/O (rollout/release/measuring.py reads the counts, rollout/analysis/judging.py runs this).

The evidence is recomputed from the stage start at every check, so a restarted bot reaches the
same verdict; a regression, once the e-value has crossed 1/alpha, stays declared for the rest
of the stage (it is found again in the same counts). `GateJudge` computes the e-process path
once for all the intervals it was given and reads it at any interval, which is exact because
the value at interval k depends only on intervals 0..k: a replay of a whole stage computes the
path once, not once per check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from rollout.analysis.judge import (
    LOG_CAP,
    first_crossing,
    histogram_quantile,
    latency_quantile_log_e_path,
    rate_log_e_paths,
    ratio_estimate,
)
from rollout.model import Judge

RECENT = 10  # intervals behind the descriptive recent ratio


@dataclass(frozen=True)
class RateCounts:
    """Per interval from the stage start (NaN: no usable counts): events (errors, failed
    workflows, fallbacks) and exposure (requests, workflows) of each track."""

    canary_events: np.ndarray
    canary_exposure: np.ndarray
    stable_events: np.ndarray
    stable_exposure: np.ndarray
    source: str  # what the events were counted from, e.g. genesis_request_errors_total


@dataclass(frozen=True)
class LatencyCounts:
    """Per interval from the stage start, (intervals, boundaries + 1) increments of the
    cumulative `le` buckets of each track, the last column +Inf (the request count)."""

    boundaries: tuple[float, ...]
    canary: np.ndarray
    stable: np.ndarray
    source: str


@dataclass(frozen=True)
class Evidence:
    """What the judge says about one gate at one check, with everything needed to explain it."""

    gate: str
    kind: Literal["rate", "latency"]
    e_value: float  # at this check
    e_max: float  # the largest so far this stage
    alpha: float
    tolerance: float
    regression: bool  # e_max reached 1/alpha (with the canary-events guard): sticky
    crossed_interval: int | None  # the interval (0 = the first after the stage start) where it did
    ratio: float | None  # canary/stable: error or failure rate, or the share slower than `boundary`
    ratio_low: float  # anytime-valid (1 - alpha) confidence sequence of the ratio
    ratio_high: float
    canary_events: float  # so far this stage
    stable_events: float
    intervals: int
    source: str
    recent_ratio: float | None = None  # the same ratio over the last RECENT intervals (descriptive)
    boundary: float | None = None  # latency: the bucket boundary nearest stable's P95
    p95_canary: float | None = None
    p95_stable: float | None = None
    quantile: float | None = None  # latency: the judged quantile and both tracks' value of it
    quantile_canary: float | None = None
    quantile_stable: float | None = None
    # latency: upper/lower boundary of the bucket holding stable's judged quantile; above
    # 1 + tolerance the judge reads stable's tail off a chord across it and sees small shifts late
    bucket_spacing: float | None = None
    warmup_intervals: int = 0  # intervals from the stage start that carry no evidence
    # the stage attempt's judge budget (analysis.judgeAlpha) of which `alpha` is this gate's
    # spend on this service (StackConfig.judge_alpha); None when the caller did not say
    alpha_budget: float | None = None

    @property
    def threshold(self) -> float:
        return 1.0 / self.alpha

    def summary(self) -> str:
        what = "share slower than %gs" % self.boundary if self.kind == "latency" and self.boundary else "rate"
        ratio = "no events yet" if self.ratio is None else (
            f"canary/stable {what} {_num(self.ratio)} over the stage [{_num(self.ratio_low)}, {_num(self.ratio_high)}]"
            + ("" if self.recent_ratio is None else f", {_num(self.recent_ratio)} over the last {RECENT} intervals"))
        verdict = ("canary worse than stable beyond the tolerance" if self.regression
                   else "no evidence that the canary is worse")
        return (f"judge: {verdict}: e-value {_num(self.e_value)} (stage max {_num(self.e_max)}, regression at "
                f"1/alpha = {self.threshold:g}, tolerance {self.tolerance:g}); {ratio}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "e_value": _json(self.e_value), "e_max": _json(self.e_max), "alpha": self.alpha,
            "threshold": self.threshold, "tolerance": self.tolerance, "regression": self.regression,
            "crossed_interval": self.crossed_interval, "ratio": _json(self.ratio),
            "ratio_low": _json(self.ratio_low), "ratio_high": _json(self.ratio_high),
            "canary_events": self.canary_events, "stable_events": self.stable_events,
            "intervals": self.intervals, "source": self.source, "recent_ratio": _json(self.recent_ratio),
            "boundary": self.boundary,
            "p95_canary": self.p95_canary, "p95_stable": self.p95_stable,
            "quantile": self.quantile, "quantile_canary": self.quantile_canary,
            "quantile_stable": self.quantile_stable, "bucket_spacing": self.bucket_spacing,
            "warmup_intervals": self.warmup_intervals,
            "alpha_budget": self.alpha_budget,
        }


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    return f"{value:.3g}"


def _json(value: float | None) -> float | str | None:
    return value if value is None or math.isfinite(value) else str(value)


class GateJudge:
    """One gate's e-process over the intervals given, readable at any of them.

    `warmup_intervals` (ceil(analysis.warmup / checkInterval)) carry no evidence; `budget` is
    the stage's judgeAlpha, reported beside this gate's `alpha`. Both are keyword arguments
    with the old behaviour as default, so older callers keep working."""

    def __init__(self, gate: str, judge: Judge, alpha: float, counts: RateCounts | LatencyCounts, *,
                 warmup_intervals: int = 0, budget: float | None = None):
        self.gate, self.judge, self.alpha, self.counts = gate, judge, alpha, counts
        self.warmup, self.budget = max(0, int(warmup_intervals)), budget
        if isinstance(counts, RateCounts):
            self.kind: Literal["rate", "latency"] = "rate"
            self.path = rate_log_e_paths(counts.canary_events, counts.canary_exposure, counts.stable_events,
                                         counts.stable_exposure, judge.tolerance, warmup=self.warmup)
            self.canary_cum = np.cumsum(_usable(counts.canary_events))
            self.stable_cum = np.cumsum(_usable(counts.stable_events))
        else:  # events: requests slower than the voting boundaries
            self.kind = "latency"
            self.path, self.canary_cum = latency_quantile_log_e_path(
                counts.canary, counts.stable, counts.boundaries, judge.tolerance, self.quantile, warmup=self.warmup)
            stable = _usable(counts.stable)
            self.stable_cum = np.cumsum(stable[:, -1] - stable[:, 0]) if stable.size else np.zeros(0)
        self.running_max = np.maximum.accumulate(self.path) if self.path.size else self.path
        self.crossing = first_crossing(self.path, alpha, self.canary_cum, judge.min_canary_events)
        self.intervals = int(self.path.size)

    @property
    def quantile(self) -> float:
        return self.judge.quantile if self.judge.quantile is not None else 0.95

    def at(self, index: int) -> Evidence:
        """The evidence once interval `index` (0-based) has ended; index < 0: none yet."""
        if index < 0 or self.intervals == 0:
            return self._evidence(-1, 0.0, 0.0, None, (None, 0.0, math.inf), {})
        index = min(index, self.intervals - 1)
        crossed = self.crossing if self.crossing is not None and self.crossing <= index else None
        estimate, extra = self._estimate(index)
        return self._evidence(index, float(self.path[index]), float(self.running_max[index]), crossed, estimate, extra)

    def _evidence(self, index: int, log_e: float, log_max: float, crossed: int | None,
                  estimate: tuple[float | None, float, float], extra: dict[str, Any]) -> Evidence:
        return Evidence(
            gate=self.gate, kind=self.kind, e_value=math.exp(min(log_e, LOG_CAP)),
            e_max=math.exp(min(log_max, LOG_CAP)), alpha=self.alpha, tolerance=self.judge.tolerance,
            regression=crossed is not None, crossed_interval=crossed, ratio=estimate[0],
            ratio_low=estimate[1], ratio_high=estimate[2],
            canary_events=float(self.canary_cum[index]) if index >= 0 else 0.0,
            stable_events=float(self.stable_cum[index]) if index >= 0 else 0.0,
            intervals=index + 1, source=self.counts.source, warmup_intervals=self.warmup,
            alpha_budget=self.budget, **extra,
        )

    def _estimate(self, index: int) -> tuple[tuple[float | None, float, float], dict[str, Any]]:
        counts = self.counts
        upto = slice(0, index + 1)
        recent = slice(max(0, index + 1 - RECENT), index + 1)
        if isinstance(counts, RateCounts):
            extra = {"recent_ratio": _pooled(counts.canary_events[recent], counts.canary_exposure[recent],
                                             counts.stable_events[recent], counts.stable_exposure[recent])}
            return ratio_estimate(counts.canary_events[upto], counts.canary_exposure[upto],
                                  counts.stable_events[upto], counts.stable_exposure[upto], self.alpha), extra
        # latency: the share of requests slower than the boundary nearest stable's P95
        canary, stable = _usable(counts.canary[upto]), _usable(counts.stable[upto])
        bounds = np.asarray(counts.boundaries)
        p95_stable = histogram_quantile(0.95, bounds, stable.sum(axis=0))
        p95_canary = histogram_quantile(0.95, bounds, canary.sum(axis=0))
        extra = {"p95_canary": p95_canary, "p95_stable": p95_stable, "quantile": self.quantile,
                 "quantile_canary": histogram_quantile(self.quantile, bounds, canary.sum(axis=0)),
                 "quantile_stable": histogram_quantile(self.quantile, bounds, stable.sum(axis=0))}
        extra["bucket_spacing"] = _spacing(bounds, extra["quantile_stable"])
        if p95_stable is None:
            return (None, 0.0, math.inf), extra
        j = int(np.argmin(np.abs(np.log(bounds) - math.log(max(p95_stable, 1e-12)))))
        extra["boundary"] = float(bounds[j])
        c, st = _usable(counts.canary[recent]), _usable(counts.stable[recent])
        extra["recent_ratio"] = _pooled(c[:, -1] - c[:, j], c[:, -1], st[:, -1] - st[:, j], st[:, -1])
        # Bonferroni over the boundaries: the boundary is picked from the data
        estimate = ratio_estimate(canary[:, -1] - canary[:, j], canary[:, -1], stable[:, -1] - stable[:, j],
                                  stable[:, -1], self.alpha / len(bounds))
        return estimate, extra


def _spacing(bounds: np.ndarray, value: float | None) -> float | None:
    """Upper over lower boundary of the finite bucket that holds `value` (None: first or +Inf)."""
    if value is None:
        return None
    k = int(np.searchsorted(bounds, value, side="left"))
    return None if k == 0 or k >= bounds.size else float(bounds[k] / bounds[k - 1])


def _usable(counts: np.ndarray) -> np.ndarray:
    """Counts for sums and descriptions: NaN, infinite and negative entries (and, for bucket
    rows, the whole row: a layout change or a partial decrease) count as 0."""
    a = np.asarray(counts, dtype=float)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(a) | (a < 0)
    if a.ndim == 2:
        return np.where(np.any(bad, axis=1, keepdims=True), 0.0, a)
    return np.where(bad, 0.0, a)


def _pooled(canary_events: np.ndarray, canary_exposure: np.ndarray, stable_events: np.ndarray,
            stable_exposure: np.ndarray) -> float | None:
    """(canary events / exposure) / (stable events / exposure) over intervals both tracks served."""
    ok = ~(np.isnan(canary_events) | np.isnan(canary_exposure) | np.isnan(stable_events) | np.isnan(stable_exposure))
    ce, cn, se, sn = (float(a[ok].sum()) for a in (canary_events, canary_exposure, stable_events, stable_exposure))
    if cn <= 0 or sn <= 0 or ce + se <= 0:
        return None
    return math.inf if se <= 0 else (ce / cn) / (se / sn)
