"""Shared helpers for the live tests: real Prometheus (and Alertmanager) on 127.0.0.1, fed by
synthetic Genesis pods, with the real rendered recording/alert rules of a stage whose timing
is compressed (1-2 s checks, a 10 s rate window) so a test takes seconds, not hours.

Nothing here is a stand-in: the binaries are the Debian prometheus/prometheus-alertmanager,
and a missing binary fails loudly (rollout.review.localstack.require_binary names the package).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

from rollout.config import load_stack_config
from rollout.local.synthetic import KubeStateMetrics, Workload, target_labels
from rollout.model import ServiceConfig, StackConfig, split_for
from rollout.monitoring.alert_rules import render_rule_file
from rollout.release.measuring import requests_in_window_query
from rollout.release.prometheus import Prometheus
from rollout.review.localstack import Running, ScrapeTarget, start_prometheus, wait_for
from support import REPO_ROOT as ROOT

NAMESPACE = "genesis"


def compressed_config(
    apps: list[str],
    *,
    stage: str = "canary",
    check_interval: str = "1s",
    window: str = "10s",
    consecutive_failures: int = 3,
    min_canary_requests: int = 20,
    group_wait: str = "1s",
    group_interval: str = "1s",
    progress_deadline: str = "5s",
) -> StackConfig:
    """The repo's real stage config with fast timing and one service per app name."""
    data = load_stack_config(ROOT, stage).model_dump(mode="json", by_alias=True)
    data["stage"]["analysis"].update(
        checkInterval=check_interval,
        window=window,
        consecutiveFailures=consecutive_failures,
        minCanaryRequests=min_canary_requests,
        hold="30s",
        progressDeadline=progress_deadline,
        warmup="0s",  # a compressed stage has no cold-pod minutes to wait out
    )
    template = data["project"]["services"][0]
    data["project"]["services"] = [{**template, "name": app, "namespace": NAMESPACE} for app in apps]
    data["project"]["monitoring"]["alerting"].update(
        groupWait=group_wait, groupInterval=group_interval
    )
    return StackConfig.model_validate(data)


@dataclass
class LiveStack:
    config: StackConfig
    prometheus: Running
    prom: Prometheus
    workloads: dict[tuple[str, str], Workload] = field(default_factory=dict)
    kube_state: KubeStateMetrics | None = None

    def service(self, app: str) -> ServiceConfig:
        return next(s for s in self.config.project.services if s.name == app)

    def canary_requests(self, app: str) -> float | None:
        window = self.config.stage.analysis.rate_window.total_seconds()
        return self.prom.value(requests_in_window_query(app, "canary", NAMESPACE, window))

    def wait_for_full_window(self, timeout: float = 40.0) -> None:
        """Until every target has been scraped across a whole rate window, so every rate()
        in the recording rules sees steady traffic (Prometheus needs ~6 s to its first scrape)."""
        window = self.config.stage.analysis.rate_window.total_seconds()
        expr = f'min(count_over_time(up{{job="genesis"}}[{window:g}s]))'

        def full() -> bool:
            value = self.prom.value(expr)
            return value is not None and value >= window

        wait_for(full, timeout, f"{window:g}s of scrapes of every target ({expr})", interval=0.25)


def synthetic_pods(
    stack: ExitStack,
    config: StackConfig,
    canary_profiles: Mapping[str, str],
    *,
    request_rate: float = 300.0,
    never_ready: Sequence[str] = (),
    without_errors_counter: Sequence[str] = (),
    header_testers: Mapping[str, tuple[float, str]] = {},  # noqa: B006 (read only)
    error_windows: Mapping[str, float] = {},  # noqa: B006 (read only)
) -> tuple[list[ScrapeTarget], dict[tuple[str, str], Workload], KubeStateMetrics]:
    """One stable and one canary pod per service (canary profile per app) and the
    kube-state-metrics stand-in with each track's Deployment fully available (a canary
    never-ready where `never_ready` names the app), all entered on `stack`; returns what a
    Prometheus-compatible server should scrape. `header_testers`: app -> (requests per second,
    profile) of testers' `x-genesis-track: canary` requests on its canary; `error_windows`:
    app -> the window of its genesis_error_rate gauge in seconds (default 10)."""
    kube_state = stack.enter_context(KubeStateMetrics())
    targets = [ScrapeTarget(kube_state.address, {})]
    workloads: dict[tuple[str, str], Workload] = {}
    for service in config.project.services:
        split = split_for(config.project.routing.router, service.replicas, config.stage.weight)
        for track in ("stable", "canary"):
            deployment = f"{service.name}-{track}"
            kube_state.set_ready(service.namespace, deployment, service.name not in never_ready or track == "stable")
            kube_state.set_replicas(service.namespace, deployment, split.replicas(track))
    for seed, service in enumerate(config.project.services):
        for track in ("stable", "canary"):
            workload = Workload(
                track,
                request_rate=request_rate,
                canary_weight=config.stage.weight,
                profile=canary_profiles[service.name] if track == "canary" else "healthy",
                seed=seed * 2 + (track == "canary"),
                errors_counter=service.name not in without_errors_counter,
                header_rate=header_testers.get(service.name, (0.0, ""))[0] if track == "canary" else 0.0,
                header_profile=header_testers.get(service.name, (0.0, "healthy"))[1] if track == "canary" else "healthy",
                error_window_seconds=error_windows.get(service.name, 10.0),
            )
            stack.enter_context(workload)
            workloads[(service.name, track)] = workload
            targets.append(ScrapeTarget(workload.address, target_labels(service, track)))
    return targets, workloads, kube_state


@contextmanager
def live_stack(
    config: StackConfig,
    canary_profiles: Mapping[str, str],
    *,
    request_rate: float = 300.0,
    alertmanager_url: str | None = None,
    never_ready: Sequence[str] = (),
    without_errors_counter: Sequence[str] = (),
    header_testers: Mapping[str, tuple[float, str]] = {},  # noqa: B006 (read only)
    error_windows: Mapping[str, float] = {},  # noqa: B006 (read only)
    extra_targets: Sequence[ScrapeTarget] = (),
) -> Iterator[LiveStack]:
    """Synthetic pods (see synthetic_pods) scraped every 1 s by a real Prometheus loaded with
    the stage's rendered rule file; `extra_targets`: more exporters to scrape (a test's own pod)."""
    with ExitStack() as stack:
        targets, workloads, kube_state = synthetic_pods(
            stack, config, canary_profiles, request_rate=request_rate, never_ready=never_ready,
            without_errors_counter=without_errors_counter, header_testers=header_testers,
            error_windows=error_windows,
        )
        targets = [*targets, *extra_targets]
        running = stack.enter_context(
            start_prometheus(
                rules=[render_rule_file(config)],
                targets=targets,
                scrape_interval="1s",
                eval_interval="1s",
                alertmanager_url=alertmanager_url,
            )
        )
        prom = stack.enter_context(Prometheus(running.url, timeout=3.0, retries=1, backoff=0.1))
        yield LiveStack(config, running, prom, workloads, kube_state)
