"""What a check reads for the judge, as plain data: per-interval counts of both tracks from the
stage start. rollout/release/measuring.py fills these from Prometheus; rollout/analysis/judging.py
judges them. Pure, no I/O.

Interval k (0-based) is (since + k x step, since + (k + 1) x step]; a check at instant `at` has
seen the intervals that ended by then (`StageCounts.interval` is the last of them). The arrays may
run further (inside `Prometheus.grid()` they cover the whole grid): the judge reads them only up
to `interval`, and every statistic at interval k depends on intervals 0..k alone.

NaN marks an interval the counts cannot vouch for (no series of a track at one of its ends, or a
histogram row that is not cumulative): it is skipped, never guessed, and skipping depends on
scrapes and pods, not on request outcomes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rollout.analysis.evidence import LatencyCounts, RateCounts

ROW_SLACK = 1e-9  # float rounding in a cumulative bucket row


@dataclass(frozen=True)
class BucketCounts:
    """A latency gate's raw reading: per interval and `le` (columns, ascending, +Inf last) each
    track's increments, and whether every series group of both tracks had that bucket at both
    ends of the interval (a version that adds or removes buckets makes them differ)."""

    les: tuple[float, ...]
    canary: np.ndarray  # (intervals, len(les))
    stable: np.ndarray
    shared: np.ndarray  # bool (intervals, len(les)): the bucket is on every series of both tracks
    source: str

    def upto(self, index: int) -> LatencyCounts:
        """The judge's counts for a check at interval `index`: only the finite boundaries present
        on both tracks in every interval so far vote (chosen from intervals 0..index alone, so a
        check reads the same inside and outside a grid), and a row that is not cumulative (a
        partial counter decrease) is skipped as a whole."""
        finite = [j for j, le in enumerate(self.les) if le != math.inf]
        if not self.les or self.les[-1] != math.inf:
            return LatencyCounts((), np.zeros((self.canary.shape[0], 0)), np.zeros((self.canary.shape[0], 0)),
                                 self.source)
        seen = self.shared[: index + 1]
        keep = [j for j in finite if bool(seen[:, j].all())] if seen.size else finite
        columns = [*keep, len(self.les) - 1]
        canary, stable = _clean_rows(self.canary[:, columns]), _clean_rows(self.stable[:, columns])
        return LatencyCounts(tuple(self.les[j] for j in keep), canary, stable, self.source)


def _clean_rows(rows: np.ndarray) -> np.ndarray:
    """Rows with a NaN or a decrease along `le` become all NaN (the interval is skipped)."""
    out = np.array(rows, dtype=float, copy=True)
    if out.size == 0:
        return out
    with np.errstate(invalid="ignore"):
        bad = np.isnan(out).any(axis=1) | (np.diff(out, axis=1) < -ROW_SLACK).any(axis=1) | (out < 0).any(axis=1)
    out[bad] = np.nan
    return out


@dataclass(frozen=True)
class StageCounts:
    """Everything the judge needs for one service at one check.

    `gates`: each judged gate's counts (RateCounts, or BucketCounts for latency) over the intervals
    read; `requests`: each track's weighted requests per interval (the sample-ratio test), or None;
    `untrusted`: gates whose counts the judge may show but never act on, with why (the error-gauge
    fallback); `failed`: gates whose counts could not be read, with why; `expected_share`: the
    canary's configured share of weighted requests (None: the router gives no per-request split).
    """

    interval: int  # the last interval ended by the check (-1: none yet)
    gates: Mapping[str, RateCounts | BucketCounts] = field(default_factory=dict)
    requests: tuple[np.ndarray, np.ndarray] | None = None  # (canary, stable) per interval
    untrusted: Mapping[str, str] = field(default_factory=dict)
    failed: Mapping[str, str] = field(default_factory=dict)
    expected_share: float | None = None
    services: int = 1  # services judged in this check (they share the stage's judge budget)
    # what the judge computes once per reading (a grid's checks share one reading)
    memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)

    def at(self, interval: int) -> StageCounts:
        """The same reading seen by a check at another interval (the memo is shared)."""
        return StageCounts(interval, self.gates, self.requests, self.untrusted, self.failed,
                           self.expected_share, self.services, self.memo)
