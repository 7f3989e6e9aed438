"""The judge's counts from Prometheus, and its evidence at one check.

Per judged gate (rollout.analysis.signals.COUNT_SOURCES): one range query per counter sum over
the stage's check grid from its start (step = the check interval), per track; the counts of an
interval are the differences of consecutive sums. A sum that went down (a pod restarted, or
left and went stale) makes that interval unusable: it is skipped (NaN), which depends on pods
coming and going, not on the requests' outcomes, so the judge stays valid. Stateless: every
check recomputes from the stage start; inside `Prometheus.grid()` (a replay, a tick that
re-judges a whole stage) the counts and e-process are computed once for the whole grid.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np

from rollout.analysis.evidence import Evidence, GateJudge, LatencyCounts, RateCounts
from rollout.analysis.signals import COUNT_SOURCES, CountSource, count_selector
from rollout.model import Stage

if TYPE_CHECKING:  # prometheus.measure() calls this module: no import cycle at run time
    from rollout.release.prometheus import Prometheus, Series

TRACKS = ("canary", "stable")


def judge_evidence(
    prom: Prometheus, stage: Stage, app: str, namespace: str | None, since: datetime | None, at: datetime
) -> dict[str, Evidence]:
    """The evidence of every judged gate of the stage once `at` has passed; {} without a stage
    start (a one-off `rollout check` cannot know which counts belong to the stage)."""
    judged = stage.gates.judged()
    if not judged or since is None:
        return {}
    step = stage.analysis.check_interval
    ended = math.floor((at - since) / step + 1e-9)  # intervals completed by `at`
    grid = prom.grid_memo()
    last = since + max(ended, 0) * step
    if grid is not None and grid[1] > last:
        last = since + math.floor((grid[1] - since) / step + 1e-9) * step
    key = ("judge", app, namespace, since, last, id(stage))
    judges = grid[0].get(key) if grid is not None else None
    if judges is None:
        read: dict[str, list[Series]] = {}  # Pipelex failures and fallbacks share their exposure
        judges = {
            name: GateJudge(name, gate.judge, stage.judge_alpha(name),  # type: ignore[arg-type]
                            _counts(prom, COUNT_SOURCES[name], app, namespace, since, last, step, read),
                            warmup_intervals=math.ceil(stage.analysis.warmup / step - 1e-9),
                            budget=stage.analysis.judge_alpha)
            for name, gate in judged
        } if ended > 0 else {}
        if grid is not None:
            grid[0][key] = judges
    if ended <= 0:
        return {}
    return {name: judge.at(ended - 1) for name, judge in judges.items()}


def _counts(prom: Prometheus, source: CountSource, app: str, namespace: str | None, since: datetime,
            last: datetime, step: timedelta, read: dict[str, list[Series]]) -> RateCounts | LatencyCounts:
    intervals = round((last - since) / step)
    selector = count_selector(app, namespace)

    def cumulative(template: str) -> list[Series]:
        expr = template.replace("{sel}", selector)
        if expr not in read:
            read[expr] = prom.query_range(expr, since, last, step.total_seconds())
        return read[expr]

    if source.kind == "latency":
        series = cumulative(source.events)
        bounds = sorted({_le(s) for s in series if _le(s) != math.inf})
        columns = [*bounds, math.inf]
        per_track = {}
        for track in TRACKS:
            per_track[track] = np.column_stack([
                _increments(next((s for s in series if s.labels.get("track") == track and _le(s) == le), None),
                            since, step, intervals) for le in columns
            ]) if columns else np.zeros((intervals, 0))
        return LatencyCounts(tuple(bounds), per_track["canary"], per_track["stable"], source.counted)
    events, exposure = cumulative(source.events), cumulative(source.exposure)
    label = source.counted
    exposure_counts = {t: _increments(_track(exposure, t), since, step, intervals) for t in TRACKS}
    if not events and source.fallback:  # no errors counter: the plan's gauge x requests
        shares = prom.query_range(source.fallback.replace("{sel}", selector), since + step, last, step.total_seconds())
        label = "genesis_error_rate x requests (no errors counter: an approximation)"
        event_counts = {t: _points(_track(shares, t), since + step, step, intervals) * exposure_counts[t] for t in TRACKS}
    else:
        event_counts = {t: _increments(_track(events, t), since, step, intervals) for t in TRACKS}
    return RateCounts(event_counts["canary"], exposure_counts["canary"], event_counts["stable"],
                      exposure_counts["stable"], label)


def _le(series: Series) -> float:
    return float(series.labels.get("le", "nan"))


def _track(series: list[Series], track: str) -> Series | None:
    return next((s for s in series if s.labels.get("track") == track), None)


def _points(series: Series | None, start: datetime, step: timedelta, count: int) -> np.ndarray:
    """The series' values at start + i x step (NaN where it has none), i < count."""
    values = np.full(count, np.nan)
    if series is None:
        return values
    origin, seconds = start.timestamp(), step.total_seconds()
    for t, v in series.points:
        i = round((t - origin) / seconds)
        if 0 <= i < count:
            values[i] = v
    return values


def _increments(series: Series | None, since: datetime, step: timedelta, count: int) -> np.ndarray:
    """Per-interval differences of a cumulative sum; a decrease (a reset, a pod gone) or a
    missing end makes the interval NaN: skipped, never guessed."""
    values = _points(series, since, step, count + 1)
    diffs = np.diff(values)
    diffs[diffs < 0] = np.nan
    return diffs
