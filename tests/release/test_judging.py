"""rollout.release.judging's arithmetic on Prometheus' answers: counter sums on the check grid
become per-interval counts; what cannot be trusted (a sum that went down, a missing instant) is
skipped, never guessed. The queries themselves run against a real Prometheus in
test_judging_live.py."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np

from rollout.release.judging import _increments, _points
from rollout.release.prometheus import Series

START = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)
STEP = timedelta(minutes=1)


def sums(*values: float | None) -> Series:
    """A cumulative sum read at START, START + 1 min, ... (None: no sample at that instant)."""
    origin = START.timestamp()
    return Series({"track": "canary"}, [(origin + 60 * i, v) for i, v in enumerate(values) if v is not None])


def test_counts_are_differences_of_consecutive_sums() -> None:
    assert _increments(sums(0, 10, 25, 45), START, STEP, 3).tolist() == [10, 15, 20]


def test_a_sum_that_went_down_makes_its_interval_unusable() -> None:
    """A pod restarted or went stale: the drop is not a negative count and not a guess."""
    counts = _increments(sums(0, 10, 25, 5, 15), START, STEP, 4)
    assert counts[:2].tolist() == [10, 15] and math.isnan(counts[2]) and counts[3] == 10


def test_a_missing_instant_leaves_both_intervals_around_it_unusable() -> None:
    counts = _increments(sums(0, 10, None, 30, 40), START, STEP, 4)
    assert counts[0] == 10 and np.isnan(counts[1:3]).all() and counts[3] == 10


def test_no_series_is_no_counts_at_all() -> None:
    assert np.isnan(_increments(None, START, STEP, 3)).all()


def test_instants_before_or_after_the_grid_are_ignored() -> None:
    origin = START.timestamp()
    series = Series({}, [(origin - 60, 1.0), (origin, 2.0), (origin + 120, 3.0), (origin + 600, 9.0)])
    values = _points(series, START, STEP, 4)
    assert values[0] == 2.0 and math.isnan(values[1]) and values[2] == 3.0 and math.isnan(values[3])
