"""The signals behind the gates: one recording rule each, per (namespace, app, track).

The alert rules record them, the dashboard plots them and the bot queries them, so a gate,
its alert and its panel always look at the same number.

Aggregation across pods (the gauges cannot simply be averaged):
- error rate: the errors counter's rate over the requests' where the app exports
  `genesis_request_errors_total`; else each pod's `genesis_error_rate` weighted by that pod's
  request rate, so an idle pod cannot hide a busy failing one;
- requests (rate, latency, error counts, Pipelex): weighted traffic only (`route!="header"`):
  testers' `x-genesis-track: canary` requests are not what the weight exposes users to;
- test pass rate: the plain mean over pods (it is a self-test result, not per request);
- latency: quantiles of the summed histogram buckets;
- Pipelex success and fallback: ratios of summed counter rates;
- Deployment availability: kube-state-metrics' available / desired replicas of the
  `<app>-<track>` Deployment (kube-prometheus-stack ships kube-state-metrics);
- router error rate (optional gate): the 5xx share of Istio's `istio_requests_total` as the
  calling side reports it, which still counts when a crashing canary reports nothing itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from rollout.model import format_duration

LABELS = "namespace, app, track"
# Requests the route's weight sent (`route="weighted"`), not testers' header-routed ones
# (`route="header"`, `x-genesis-track: canary`): the judge and the gates compare the populations
# the weight splits. Series without a route label (an app that does not set it) all count.
WEIGHTED = 'route!="header"'
# the request-driven signals' selector (in their format strings: braces doubled)
_WEIGHTED = "{{" + WEIGHTED + "}}"


@dataclass(frozen=True)
class Signal:
    key: str  # gate field name in rollout.model.Gates, or a dashboard-only signal
    record: str  # recording rule name (level:metric:operations)
    expr_template: str  # PromQL with {window} and {by}
    unit: str  # 'ratio', 'seconds', 'per_minute', 'per_second'
    title: str

    def expr(self, window: timedelta) -> str:
        w = format_duration(window)
        return self.expr_template.format(
            window=w, by=LABELS, istio_5xx=_istio_rate(w, '", response_code=~"5.."'), istio_all=_istio_rate(w, '"')
        )


def _istio_rate(window: str, extra: str) -> str:
    """Requests to `<app>-<track>` workloads as the calling proxy reports them (reporter=source:
    a request to a pod that is gone or crashing still counts), in the destination's namespace."""
    return (
        "label_replace(label_replace(label_replace("
        f'rate(istio_requests_total{{reporter="source{extra}}}[{window}]),'
        ' "namespace", "$1", "destination_workload_namespace", "(.+)"),'
        ' "app", "$1", "destination_workload", "(.+)-(?:stable|canary)"),'
        ' "track", "$1", "destination_workload", ".+-(stable|canary)")'
    )


SIGNALS: tuple[Signal, ...] = (
    Signal(
        "requests_per_second",
        "namespace_app_track:genesis_requests:rate",
        "sum by ({by}) (rate(genesis_request_duration_seconds_count" + _WEIGHTED + "[{window}]))",
        "per_second",
        "Requests per second",
    ),
    Signal(
        "error_rate",
        "namespace_app_track:genesis_error_rate:weighted_avg",
        # the errors counter where a track exports it (weighted requests only); else the plan's
        # gauge, which has no route label (one value per pod, testers included), weighted by the
        # pod's weighted requests
        "(sum by ({by}) (rate(genesis_request_errors_total" + _WEIGHTED + "[{window}]))"
        " / sum by ({by}) (rate(genesis_request_duration_seconds_count" + _WEIGHTED + "[{window}])))"
        " or (sum by ({by}) (genesis_error_rate * sum without (route) (rate(genesis_request_duration_seconds_count"
        + _WEIGHTED + "[{window}])))"
        " / sum by ({by}) (rate(genesis_request_duration_seconds_count" + _WEIGHTED + "[{window}])))",
        "ratio",
        "Error rate",
    ),
    Signal(
        "p50_latency_seconds",
        "namespace_app_track:genesis_request_duration_seconds:p50",
        "histogram_quantile(0.5, sum by ({by}, le) (rate(genesis_request_duration_seconds_bucket" + _WEIGHTED + "[{window}])))",
        "seconds",
        "P50 latency",
    ),
    Signal(
        "p95_latency_seconds",
        "namespace_app_track:genesis_request_duration_seconds:p95",
        "histogram_quantile(0.95, sum by ({by}, le) (rate(genesis_request_duration_seconds_bucket" + _WEIGHTED + "[{window}])))",
        "seconds",
        "P95 latency",
    ),
    Signal(
        "p99_latency_seconds",
        "namespace_app_track:genesis_request_duration_seconds:p99",
        "histogram_quantile(0.99, sum by ({by}, le) (rate(genesis_request_duration_seconds_bucket" + _WEIGHTED + "[{window}])))",
        "seconds",
        "P99 latency",
    ),
    Signal(
        "test_pass_rate",
        "namespace_app_track:genesis_test_pass_rate:avg",
        "avg by ({by}) (genesis_test_pass_rate)",
        "ratio",
        "Test pass rate",
    ),
    Signal(
        "pipelex_success_rate",
        "namespace_app_track:pipelex_workflows_success:ratio_rate",
        "sum by ({by}) (rate(pipelex_workflows_success_total" + _WEIGHTED + "[{window}]))"
        " / sum by ({by}) (rate(pipelex_workflows_total" + _WEIGHTED + "[{window}]))",
        "ratio",
        "Pipelex workflow success",
    ),
    Signal(
        "fallback_rate",
        "namespace_app_track:pipelex_fallback_triggered:ratio_rate",
        "sum by ({by}) (rate(pipelex_fallback_triggered_total" + _WEIGHTED + "[{window}]))"
        " / sum by ({by}) (rate(pipelex_workflows_total" + _WEIGHTED + "[{window}]))",
        "ratio",
        "Fallback rate",
    ),
    Signal(
        "deployment_available",
        "namespace_app_track:kube_deployment_status_replicas_available:ratio",
        # the Deployment <app>-<track> of kube-state-metrics, named back into app and track
        "max by ({by}) (label_replace(label_replace("
        'max by (namespace, deployment) (kube_deployment_status_replicas_available{{deployment=~".+-(stable|canary)"}})'
        " / max by (namespace, deployment) (kube_deployment_spec_replicas),"
        ' "app", "$1", "deployment", "(.+)-(?:stable|canary)"),'
        ' "track", "$1", "deployment", ".+-(stable|canary)"))',
        "ratio",
        "Ready replicas / desired",
    ),
    Signal(
        "router_error_rate",
        "namespace_app_track:istio_requests_5xx:ratio_rate",
        # Istio has no 5xx series until a 5xx happens: no errors is 0, not missing data
        "(sum by ({by}) ({istio_5xx}) or 0 * sum by ({by}) ({istio_all})) / sum by ({by}) ({istio_all})",
        "ratio",
        "Router-measured error rate",
    ),
    Signal(
        "spice_tasks_per_minute",
        "namespace_app_track:spice_tasks_generated:rate_per_minute",
        "60 * sum by ({by}) (rate(spice_tasks_generated_total[{window}]))",
        "per_minute",
        "SPICE tasks per minute",
    ),
)

BY_KEY: dict[str, Signal] = {s.key: s for s in SIGNALS}

# The raw series behind the signals, as the app and kube-state-metrics export them:
# (family, type, help). A replay file holds these (istio_requests_total, of the optional router
# gate, is left out: its series name the workload, not the app).
APP_FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("spice_tasks_generated", "counter", "SPICE tasks generated"),
    ("pipelex_workflows", "counter", "Pipelex workflows run"),
    ("pipelex_workflows_success", "counter", "Pipelex workflows that succeeded"),
    ("pipelex_fallback_triggered", "counter", "Pipelex fallbacks triggered"),
    ("genesis_request_errors", "counter", "Requests that failed (optional: the judge reads it when present)"),
    ("genesis_test_pass_rate", "gauge", "Share of self-tests passing"),
    ("genesis_error_rate", "gauge", "Share of requests that failed, recent window"),
    ("genesis_request_duration_seconds", "histogram", "Request duration"),
)
DEPLOYMENT_FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("kube_deployment_spec_replicas", "gauge", "Desired replicas of a Deployment"),
    ("kube_deployment_status_replicas_available", "gauge", "Available replicas of a Deployment"),
)
RAW_FAMILIES = APP_FAMILIES + DEPLOYMENT_FAMILIES

def signal(key: str) -> Signal:
    return BY_KEY[key]


def selector(app: str, track: str, namespace: str | None = None) -> str:
    """Label matchers for one service's track; namespace is optional."""
    parts = [f'app="{app}"', f'track="{track}"']
    if namespace:
        parts.insert(0, f'namespace="{namespace}"')
    return "{" + ", ".join(parts) + "}"


def recorded_query(key: str, app: str, track: str, namespace: str | None = None) -> str:
    """The instant query the bot sends for a gate signal."""
    return signal(key).record + selector(app, track, namespace)


def availability_query(app: str, namespace: str | None, deadline: timedelta) -> str:
    """The canary Deployment's best availability within the progress deadline: below 1 means it
    was never fully available during the whole deadline."""
    return f"max_over_time({recorded_query('deployment_available', app, 'canary', namespace)}[{format_duration(deadline)}])"


# --------------------------------------------------------------------------- the judge's counts


@dataclass(frozen=True)
class CountSource:
    """The counters behind a judged gate. Per-interval counts are each series' own increments
    (`increments_query`), summed per track: raw counter values, never an extrapolated
    increase(). `events_minus` is subtracted from `events` (failed = all - succeeded).
    `fallback` gives the events when the app exports no counter for them: a share of the
    requests (the plan's gauge), multiplied by the interval's requests (docs/judge.md)."""

    gate: str
    kind: str  # "rate" (events per exposure) or "latency" (le buckets)
    counted: str  # what the events are, as the evidence names them
    events: str  # a counter (for latency: the histogram's _bucket series)
    exposure: str = ""
    events_minus: str = ""
    fallback: str = ""  # a ratio per track: events = ratio x the interval's exposure


REQUESTS_COUNTER = "genesis_request_duration_seconds_count"

COUNT_SOURCES: dict[str, CountSource] = {
    source.gate: source
    for source in (
        CountSource(
            "error_rate", "rate", "genesis_request_errors_total per genesis_request_duration_seconds_count",
            events="genesis_request_errors_total", exposure=REQUESTS_COUNTER,
            # the plan's gauge, through its recording rule (each track's request-weighted error
            # share over the rate window) times the track's requests in the interval
            fallback="namespace_app_track:genesis_error_rate:weighted_avg{sel}",
        ),
        CountSource(
            "pipelex_success_rate", "rate", "failed workflows per pipelex_workflows_total",
            events="pipelex_workflows_total", events_minus="pipelex_workflows_success_total",
            exposure="pipelex_workflows_total",
        ),
        CountSource(
            "fallback_rate", "rate", "pipelex_fallback_triggered_total per pipelex_workflows_total",
            events="pipelex_fallback_triggered_total", exposure="pipelex_workflows_total",
        ),
        CountSource(
            "p95_latency_seconds", "latency", "genesis_request_duration_seconds_bucket",
            events="genesis_request_duration_seconds_bucket",
        ),
    )
}


def count_selector(app: str, namespace: str | None) -> str:
    parts = [f'app="{app}"', 'track=~"stable|canary"', WEIGHTED]
    if namespace:
        parts.insert(0, f'namespace="{namespace}"')
    return "{" + ", ".join(parts) + "}"


def increments_query(counter: str, selector_: str, step_seconds: float, by: str = "track") -> str:
    """Each series' increase over the `step_seconds` before the instant, summed by `by`, with
    Prometheus' counter semantics per series (what rate() and increase() do, minus their
    extrapolation): a value below the one a step earlier is a reset, the series counted again
    from 0, so its increment is its value; a series without a value a step earlier (a new pod,
    or one back after a failed scrape) starts counting at its first sample. Summing first and
    differencing after would turn one pod's restart into an unusable interval for the track."""
    now = f"{counter}{selector_}"
    before = f"{counter}{selector_} offset {round(step_seconds * 1000)}ms"
    diff = f"({now} - {before})"
    return f"sum by ({by}) (({diff} >= 0) or ({now} and ({diff} < 0)))"


def presence_query(counter: str, selector_: str, by: str = "track, le") -> str:
    """How many series carry each `by` value (the buckets each track's pods export)."""
    return f"count by ({by}) ({counter}{selector_})"


def canary_share_query(app: str, namespace: str | None = None) -> str:
    """The canary's share of one service's requests in percent, as the router really splits them
    (what the dashboard's measured-share panel plots, from the same recording rule)."""
    rate = signal("requests_per_second").record
    scope = f'namespace="{namespace}", app="{app}"' if namespace else f'app="{app}"'
    return f'100 * sum({rate}{{{scope}, track="canary"}}) / sum({rate}{{{scope}}})'
