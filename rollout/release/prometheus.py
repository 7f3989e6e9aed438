"""A thin Prometheus HTTP API client for the bot, and `measure`: one check's numbers.

Errors (unreachable, timeout, HTTP error, bad query) become `PrometheusError` naming the URL
and the query: the bot treats them as 'could not check', never as a pass.
Transport errors and 5xx answers are retried a bounded number of times with exponential
backoff; a 4xx (bad query) is not, it will not get better.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self

import httpx

from rollout.analysis.gates import GateMeasurement, Measurements
from rollout.analysis.signals import availability_query, recorded_query
from rollout.model import ServiceConfig, Stage


class PrometheusError(RuntimeError):
    """A query could not be answered. `str()` names the URL, the query and why."""

    def __init__(self, url: str, query: str, reason: str):
        self.url = url
        self.query = query
        self.reason = reason
        super().__init__(f"Prometheus at {url}: query {query!r} failed: {reason}")


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    points: list[tuple[float, float]]  # (unix time, value)


def _timestamp(at: datetime) -> str:
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return f"{at.timestamp():.3f}"


class Prometheus:
    """Instant and range queries against one Prometheus; counts the queries it sends."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        retries: int = 2,
        backoff: float = 0.2,
        client: httpx.Client | None = None,
    ):
        self.url = url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self.queries = 0
        self._client = client or httpx.Client(timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ transport

    def _get(self, path: str, params: dict[str, str], query: str) -> Any:
        """GET an API path; returns the `data` field. Retries transport errors and 5xx."""
        self.queries += 1
        url = self.url + path
        last = "no attempt made"
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = self._client.get(url, params=params)
            except httpx.TimeoutException:
                last = "timed out"
                continue
            except httpx.TransportError as err:
                last = f"unreachable ({type(err).__name__}: {err})"
                continue
            if response.status_code >= 500:
                last = f"HTTP {response.status_code}: {response.text[:200]}"
                continue
            try:
                body = response.json()
            except ValueError:
                raise PrometheusError(
                    self.url, query, f"HTTP {response.status_code}, not a JSON answer"
                ) from None
            if response.status_code != 200 or body.get("status") != "success":
                error = body.get("error") or response.text[:200]
                raise PrometheusError(self.url, query, f"HTTP {response.status_code}: {error}")
            return body.get("data")
        raise PrometheusError(self.url, query, f"{last} (after {self.retries + 1} attempts)")

    # ------------------------------------------------------------------ queries

    def query(self, expr: str, at: datetime | None = None) -> list[Sample]:
        """Instant query, now or at a past instant (retrospective checks)."""
        params = {"query": expr}
        if at is not None:
            params["time"] = _timestamp(at)
        data = self._get("/api/v1/query", params, expr)
        kind = data.get("resultType")
        if kind == "scalar":
            return [Sample({}, float(data["result"][1]))]
        if kind != "vector":
            raise PrometheusError(self.url, expr, f"expected an instant vector, got {kind}")
        return [Sample(item["metric"], float(item["value"][1])) for item in data["result"]]

    def query_range(
        self, expr: str, start: datetime, end: datetime, step_seconds: float
    ) -> list[Series]:
        params = {
            "query": expr,
            "start": _timestamp(start),
            "end": _timestamp(end),
            "step": f"{step_seconds:g}",
        }
        data = self._get("/api/v1/query_range", params, expr)
        return [
            Series(item["metric"], [(float(t), float(v)) for t, v in item["values"]])
            for item in data["result"]
        ]

    def value(self, expr: str, at: datetime | None = None) -> float | None:
        """The one value of a query that names one series; None when there is no series."""
        samples = self.query(expr, at)
        if not samples:
            return None
        if len(samples) > 1:
            shown = ", ".join(str(s.labels) for s in samples[:3])
            raise PrometheusError(
                self.url, expr, f"expected one series, got {len(samples)} ({shown}): narrow the selector"
            )
        return samples[0].value

    # ------------------------------------------------------------------ preflight helpers

    def ready(self) -> bool:
        try:
            return self._client.get(self.url + "/-/ready").status_code == 200
        except httpx.HTTPError:
            return False

    def rules_loaded(self, names: Iterable[str]) -> dict[str, bool]:
        """Which of these recording/alerting rule names Prometheus has loaded."""
        data = self._get("/api/v1/rules", {}, "GET /api/v1/rules")
        loaded = {rule["name"] for group in data["groups"] for rule in group["rules"]}
        return {name: name in loaded for name in names}

    def series_exists(self, series_selector: str, at: datetime | None = None) -> bool:
        return bool(self.query(f"count({series_selector})", at))

    def firing_alerts(self) -> list[dict[str, Any]]:
        """Alerts in state 'firing' as Prometheus reports them (labels, annotations, activeAt)."""
        data = self._get("/api/v1/alerts", {}, "GET /api/v1/alerts")
        return [alert for alert in data["alerts"] if alert.get("state") == "firing"]


# ---------------------------------------------------------------------- one check


def requests_in_window_query(
    app: str, track: str, namespace: str | None, window_seconds: float
) -> str:
    """Requests served in the window, from the request-rate recording rule."""
    return f"{recorded_query('requests_per_second', app, track, namespace)} * {window_seconds:g}"


def measure(
    prom: Prometheus,
    stage: Stage,
    service: ServiceConfig | str,
    at: datetime | None = None,
    *,
    namespace: str | None = None,
    since: datetime | None = None,
) -> Measurements:
    """Query every gate's recording rule for canary and stable, plus the canary request count.

    `service` is a ServiceConfig (its namespace is used unless `namespace` is given) or an app
    name; `since` is when the stage started (for the progress deadline). 2 queries per gate,
    2 for the canary's availability and 1 for the request count; `Measurements.queries` says
    how many.
    """
    if isinstance(service, ServiceConfig):
        app, namespace = service.name, namespace or service.namespace
    else:
        app = service
    before = prom.queries
    gates = {}
    for name, _ in stage.gates.items():  # noqa: PERF102 (a list of pairs, not a dict)
        canary_query = recorded_query(name, app, "canary", namespace)
        stable_query = recorded_query(name, app, "stable", namespace)
        gates[name] = GateMeasurement(
            canary=prom.value(canary_query, at),
            stable=prom.value(stable_query, at),
            query=canary_query,
            stable_query=stable_query,
        )
    availability = None
    if stage.weight > 0:
        deadline = stage.analysis.progress_deadline
        canary_query = availability_query(app, namespace, deadline)
        stable_query = recorded_query("deployment_available", app, "stable", namespace)
        availability = GateMeasurement(
            canary=prom.value(canary_query, at),
            stable=prom.value(stable_query, at),
            query=canary_query,
            stable_query=stable_query,
        )
    window = stage.analysis.rate_window.total_seconds()
    requests_query = requests_in_window_query(app, "canary", namespace, window)
    requests = prom.value(requests_query, at)
    if requests is not None and math.isnan(requests):
        requests = None
    moment = at or datetime.now(UTC)
    when = moment.isoformat()
    return Measurements(
        gates=gates,
        canary_requests=requests,
        requests_query=requests_query,
        at=when,
        queries=prom.queries - before,
        availability=availability,
        stage_age=None if since is None else moment - since,
    )

