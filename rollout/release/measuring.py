"""One check's numbers: everything a check needs, read from Prometheus into plain measurements.

The one way through a check: the Prometheus client (rollout/release/prometheus.py) only talks
to its server; this module asks it for every gate's recorded value of both tracks and, for
judged gates, each track's per-interval counts since the stage started, and returns
`Measurements` (rollout/analysis/gates.py, rollout/analysis/counts.py: dataclasses and arrays);
rollout/analysis/ judges them; the bot decides. Nothing here judges, nothing in analysis/ reads.

Counts (docs/architecture.md, "Where the judge's counts come from"): per series, on the check grid
from the stage start (one range query per counter), with Prometheus' counter semantics
(rollout.analysis.signals.increments_query), summed per track; weighted requests only. Inside
`Prometheus.grid()` (a tick re-judging its last checks, a replay, a report) the counts are read
once for the whole grid and every check reads them at its own interval: the interval that ended
by the check's instant, never a later one, so a check reads exactly the same inside and outside
a grid.

A check's gate values raise PrometheusError when they cannot be read (the bot's 'could not
check'); the judge's counts never raise: a count that cannot be read, or that is not what the
judge needs, is reported with the gate (it holds, the thresholds still judge).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np

from rollout.analysis.counts import BucketCounts, StageCounts
from rollout.analysis.evidence import RateCounts
from rollout.analysis.gates import GateMeasurement, Measurements
from rollout.analysis.signals import (
    COUNT_SOURCES,
    REQUESTS_COUNTER,
    CountSource,
    availability_query,
    count_selector,
    increments_query,
    presence_query,
    recorded_query,
)
from rollout.model import ServiceConfig, Stage, format_duration
from rollout.release.prometheus import Prometheus, Series

TRACKS = ("canary", "stable")
WEIGHTED_ROUTERS = ("gateway-api", "istio")  # they pick the track per request by weight


def requests_in_window_query(app: str, track: str, namespace: str | None, window_seconds: float) -> str:
    """Requests served in the window, from the request-rate recording rule."""
    return f"{recorded_query('requests_per_second', app, track, namespace)} * {window_seconds:g}"


def expected_canary_share(router: str | None, weight: int) -> float | None:
    """The canary's share of weighted requests the route is configured to give: the weight, for
    routers that choose per request. None for replica-ratio (traffic follows connections and
    pods, not a per-request draw: no law to test) or when the router is not known."""
    return weight / 100 if router in WEIGHTED_ROUTERS else None


def measure(
    prom: Prometheus,
    stage: Stage,
    service: ServiceConfig | str,
    at: datetime | None = None,
    *,
    namespace: str | None = None,
    since: datetime | None = None,
    router: str | None = None,
    services: int = 1,
) -> Measurements:
    """Every gate's recording rule for canary and stable, the canary request count, and (with a
    stage start, for judged gates) the judge's counts.

    `service` is a ServiceConfig (its namespace is used unless `namespace` is given) or an app
    name; `since` is when the stage started; `router` (routing.router) lets the judge test the
    canary's share of requests against the stage's weight; `services`: how many services this
    check judges (they share the judge's budget). `Measurements.queries` says how many queries
    the check took.
    """
    if isinstance(service, ServiceConfig):
        app, namespace = service.name, namespace or service.namespace
        gauge_window = service.error_gauge_window
    else:
        app, gauge_window = service, None
    with prom.budget():
        before = prom.queries
        moment = at or datetime.now(UTC)
        values = _values(prom, stage, app, namespace, at)
        counts = read_counts(prom, stage, app, namespace, since, moment, gauge_window,
                             expected_canary_share(router, stage.weight), services)
        return Measurements(
            **values, at=moment.isoformat(), queries=prom.queries - before,
            stage_age=None if since is None else moment - since, counts=counts,
        )


def _values(prom: Prometheus, stage: Stage, app: str, namespace: str | None, at: datetime | None) -> dict:
    """2 queries per gate, 2 for the canary's availability and 1 for the request count."""
    gates = {}
    for name, _ in stage.gates.items():  # noqa: PERF102 (a list of pairs, not a dict)
        canary_query = recorded_query(name, app, "canary", namespace)
        stable_query = recorded_query(name, app, "stable", namespace)
        gates[name] = GateMeasurement(prom.value(canary_query, at), prom.value(stable_query, at), canary_query,
                                      stable_query)
    availability = None
    if stage.weight > 0:
        canary_query = availability_query(app, namespace, stage.analysis.progress_deadline)
        stable_query = recorded_query("deployment_available", app, "stable", namespace)
        availability = GateMeasurement(prom.value(canary_query, at), prom.value(stable_query, at), canary_query,
                                       stable_query)
    requests_query = requests_in_window_query(app, "canary", namespace, stage.analysis.rate_window.total_seconds())
    requests = prom.value(requests_query, at)
    if requests is not None and math.isnan(requests):
        requests = None
    return {"gates": gates, "availability": availability, "canary_requests": requests,
            "requests_query": requests_query}


# ---------------------------------------------------------------------- the judge's counts


def read_counts(
    prom: Prometheus, stage: Stage, app: str, namespace: str | None, since: datetime | None, at: datetime,
    gauge_window: timedelta | None = None, expected_share: float | None = None, services: int = 1,
) -> StageCounts | None:
    """The judge's counts for a check at `at`: None without judged gates or a stage start (a
    one-off `rollout check` cannot know which counts belong to the stage)."""
    judged = stage.gates.judged()
    if not judged or since is None:
        return None
    step = stage.analysis.check_interval
    ended = math.floor((at - since) / step + 1e-9)  # intervals completed by `at`
    if ended <= 0:
        return StageCounts(-1)
    last = since + ended * step
    grid = prom.grid_memo()
    if grid is not None and grid[1] > last:  # read the whole grid once; each check reads its interval
        last = since + math.floor((grid[1] - since) / step + 1e-9) * step
    key = ("counts", app, namespace, since, last, id(stage), gauge_window, expected_share, services)
    reading = grid[0].get(key) if grid is not None else None
    if reading is None:
        reading = _Reader(prom, stage, app, namespace, since, last, gauge_window, expected_share, services).read()
        if grid is not None:
            grid[0][key] = reading
    return reading.at(ended - 1)


class _Reader:
    """Reads one stage's counts from `since` to `last`; each counter once (gates share some)."""

    def __init__(self, prom: Prometheus, stage: Stage, app: str, namespace: str | None, since: datetime,
                 last: datetime, gauge_window: timedelta | None, expected_share: float | None, services: int):
        self.prom, self.stage, self.since, self.last = prom, stage, since, last
        self.step = stage.analysis.check_interval
        self.seconds = self.step.total_seconds()
        self.intervals = round((last - since) / self.step)
        self.selector = count_selector(app, namespace)
        self.gauge_window, self.expected_share, self.services = gauge_window, expected_share, services
        self.read_already: dict[str, list[Series]] = {}

    def read(self) -> StageCounts:
        gates: dict[str, RateCounts | BucketCounts] = {}
        untrusted: dict[str, str] = {}
        failed: dict[str, str] = {}
        for name, _ in self.stage.gates.judged():
            source = COUNT_SOURCES[name]
            try:
                if source.kind == "latency":
                    gates[name] = self._buckets(source)
                else:
                    gates[name], distrust = self._rate(source)
                    if distrust:
                        untrusted[name] = distrust
            except Exception as err:  # noqa: BLE001 - the gate holds with it; the thresholds still judge
                failed[name] = f"{type(err).__name__}: {err}"
        requests = None
        if self.expected_share is not None:
            try:
                series = self._increments(REQUESTS_COUNTER)
                requests = (self._points(_track(series, "canary")), self._points(_track(series, "stable")))
            except Exception:  # noqa: BLE001 - no sample ratio test this check; the gates are unaffected
                requests = None
        return StageCounts(self.intervals - 1, gates, requests, untrusted, failed, self.expected_share, self.services)

    # -------------------------------------------------------------- queries

    def _increments(self, counter: str, by: str = "track") -> list[Series]:
        expr = increments_query(counter, self.selector, self.seconds, by)
        if expr not in self.read_already:  # interval k ends at since + (k + 1) x step
            self.read_already[expr] = self.prom.query_range(expr, self.since + self.step, self.last, self.seconds)
        return self.read_already[expr]

    def _points(self, series: Series | None, start: datetime | None = None, count: int | None = None) -> np.ndarray:
        """The series' values at start + i x step (NaN where it has none), i < count; by default
        the interval ends since + (i + 1) x step."""
        start = start or self.since + self.step
        count = self.intervals if count is None else count
        values = np.full(count, np.nan)
        if series is None:
            return values
        origin = start.timestamp()
        for t, v in series.points:
            i = round((t - origin) / self.seconds)
            if 0 <= i < count:
                values[i] = v
        return values

    # -------------------------------------------------------------- per gate

    def _rate(self, source: CountSource) -> tuple[RateCounts, str | None]:
        events, exposure = self._increments(source.events), self._increments(source.exposure)
        exposure_counts = {t: self._points(_track(exposure, t)) for t in TRACKS}
        label, distrust = source.counted, None
        if not events and source.fallback:  # no errors counter: the plan's gauge x requests
            shares = self.prom.query_range(source.fallback.replace("{sel}", self.selector), self.since + self.step,
                                           self.last, self.seconds)
            label = "genesis_error_rate x requests (no errors counter: an approximation)"
            event_counts = {t: self._points(_track(shares, t)) * exposure_counts[t] for t in TRACKS}
            distrust = self._gauge_distrust()
        else:
            minus = self._increments(source.events_minus) if source.events_minus else []
            event_counts = {}
            for t in TRACKS:
                counted = self._points(_track(events, t))
                if source.events_minus:
                    counted = counted - self._points(_track(minus, t))
                with np.errstate(invalid="ignore"):
                    counted[counted < 0] = np.nan  # two counters of one scrape disagree: not trusted
                event_counts[t] = counted
        return RateCounts(event_counts["canary"], exposure_counts["canary"], event_counts["stable"],
                          exposure_counts["stable"], label), distrust

    def _gauge_distrust(self) -> str | None:
        """Why counts from the error gauge cannot roll back, or None when the service states that
        the gauge's window is the check interval (each error then counted about once)."""
        interval = format_duration(self.step)
        if self.gauge_window == self.step:
            return None
        stated = "not stated" if self.gauge_window is None else format_duration(self.gauge_window)
        return (f"errors are estimated from the error gauge (no genesis_request_errors_total), whose window "
                f"({stated}) is not the check interval ({interval}): an error is counted once per check its "
                f"window overlaps; export the errors counter, or set the service's errorGaugeWindow to "
                f"{interval} if the app's gauge really covers that window")

    def _buckets(self, source: CountSource) -> BucketCounts:
        increments = self._increments(source.events, "track, le")
        presence = self.prom.query_range(presence_query(source.events, self.selector), self.since, self.last,
                                         self.seconds)
        les = sorted({_le(s) for s in (*increments, *presence) if not math.isnan(_le(s))})
        if not les:
            empty = np.zeros((self.intervals, 0))
            return BucketCounts((), empty, empty, np.zeros((self.intervals, 0), dtype=bool), source.counted)
        per_track = {
            t: np.column_stack([self._points(_series(increments, t, le)) for le in les]) for t in TRACKS
        }
        # a bucket is shared at an instant when every series group of each track has it (its
        # count equals the +Inf bucket's); an interval needs it at both ends
        instants = self.intervals + 1
        shared_at = np.ones((instants, len(les)), dtype=bool)
        for t in TRACKS:
            total = np.nan_to_num(self._points(_series(presence, t, math.inf), self.since, instants))
            for j, le in enumerate(les):
                shared_at[:, j] &= np.nan_to_num(self._points(_series(presence, t, le), self.since, instants)) == total
        shared = shared_at[:-1] & shared_at[1:]
        return BucketCounts(tuple(les), per_track["canary"], per_track["stable"], shared, source.counted)


def _le(series: Series) -> float:
    try:
        return float(series.labels.get("le", "nan"))
    except ValueError:
        return math.nan


def _track(series: list[Series], track: str) -> Series | None:
    return next((s for s in series if s.labels.get("track") == track), None)


def _series(series: list[Series], track: str, le: float) -> Series | None:
    return next((s for s in series if s.labels.get("track") == track and _le(s) == le), None)
