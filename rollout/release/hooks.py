"""Wiring the bot's release hooks: Alertmanager + Grafana notifications and reports.

The adapters live in rollout.release.notify and rollout.release.report; this module only puts them together
from URLs and the release, for the CLI and the demo.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

from rollout.model import Release, ServiceConfig
from rollout.release.bot import ReleaseHook, StageChange, utcnow
from rollout.release.deployer import Deployer
from rollout.release.notify import (
    AlertmanagerClient,
    GrafanaClient,
    NotifyError,
    ReleaseNotifier,
    Secret,
    notify_timeout,
    read_token,
)
from rollout.release.prometheus import Prometheus, PrometheusError
from rollout.release.report import (
    Series,
    report_for_change,
    series_from_prometheus,
    write_report,
)

log = logging.getLogger("rollout.release.hooks")


@dataclass
class StageReportWriter:
    """Writes the report of a stage change, plotting the whole stage from Prometheus.

    Falls back to the checks' own values when Prometheus cannot answer the range queries:
    a report is still written, the plot is just coarser.
    """

    out_dir: Path
    release: Release
    service: ServiceConfig
    prometheus: Prometheus | None = None

    def series(self, change: Any) -> Series | None:
        if self.prometheus is None or change.started_at is None:
            return None
        source = self.release.stage(change.source)
        step = max(source.analysis.check_interval.total_seconds() / 2, 1.0)
        try:
            measured = series_from_prometheus(
                self.prometheus, self.service.name, self.service.namespace,
                change.started_at, change.at, source.weight, step,
            )
        except PrometheusError:
            return None
        if not measured.times:
            return None
        target = self.release.stage(change.target)
        # the stage's weight from its start, then the weight the decision applied
        return Series(
            times=[change.started_at, *measured.times, change.at],
            weight=[source.weight, *measured.weight, target.weight],
            error_rate=[None, *measured.error_rate, None],
            p95_latency_seconds=[None, *measured.p95_latency_seconds, None],
        )

    def __call__(self, change: Any, events: Iterable[tuple[datetime, str]] = ()) -> Path:
        report = report_for_change(change, self.release, self.service.name, events, self.series(change))
        return write_report(report, self.out_dir)


def _token(name: str) -> tuple[Secret | None, str | None]:
    """(token, None), (None, None) when not configured, (None, why) when it cannot be read."""
    try:
        return read_token(name, required=False), None
    except NotifyError as err:
        return None, str(err)


def default_hooks(
    *,
    release: Release,
    alertmanager_url: str | None,
    grafana_url: str | None,
    report_dir: Path,
    prometheus: Prometheus | None,
) -> list[ReleaseHook]:
    """One notifier per service (alert on rollback, annotate every change); the first also
    writes the report, so its timeline lists what was sent. Tokens come from the environment
    (GRAFANA_TOKEN[_FILE], ALERTMANAGER_TOKEN[_FILE]), never from arguments or config."""
    # A credential problem never stops the bot: it becomes a client whose every call fails with
    # it, after the stage change (the outcome then says "applied, not notified").
    timeout = notify_timeout()
    am_token, am_problem = _token("ALERTMANAGER_TOKEN")
    alertmanager = (AlertmanagerClient(alertmanager_url, am_token, broken=am_problem, timeout=timeout)
                    if alertmanager_url else None)
    grafana_url = grafana_url or release.project.monitoring.grafana.url
    token, problem = _token("GRAFANA_TOKEN") if grafana_url else (None, None)
    grafana = GrafanaClient(grafana_url, token, broken=problem, timeout=timeout) if grafana_url else None
    if grafana is not None and not (token or problem or grafana.has_credentials):
        log.warning("no GRAFANA_TOKEN or GRAFANA_TOKEN_FILE: Grafana annotations are off")
        grafana = None
    # links people open: never with the credentials a URL may carry
    public_url = release.project.monitoring.grafana.public_url or (grafana.base_url if grafana else None)
    if public_url is None and grafana_url:
        public_url = GrafanaClient(grafana_url).base_url
    hooks: list[ReleaseHook] = []
    for i, service in enumerate(release.project.services):
        hooks.append(
            ReleaseNotifier(
                app=service.name,
                namespace=service.namespace,
                runbook_base_url=release.project.monitoring.runbook_base_url,
                alertmanager=alertmanager,
                grafana=grafana,
                dashboard_uid=os.environ.get("GRAFANA_DASHBOARD_UID") or None,
                report_writer=StageReportWriter(report_dir, release, service, prometheus) if i == 0 else None,
                weights={s.name: s.weight for s in release.stages},
                dashboard_base_url=public_url,
            )
        )
    return hooks


def write_stage_report(release: Release, deployer: Deployer, prometheus: Prometheus, report_dir: Path) -> Path:
    """`rollout report`: the current stage so far, with its recent checks (no stage change)."""
    from rollout.release.bot import ReleaseBot

    state = deployer.current()
    stage = release.stage(state.stage)
    now = utcnow()
    checks = ReleaseBot(release, deployer, prometheus).recent_checks(stage, state.since, now) if stage.weight else []
    change = StageChange(
        action="status", source=stage.name, target=stage.name, reason="stage report on request",
        started_at=state.since, at=now, checks=checks, applied=None,
    )
    writer = StageReportWriter(report_dir, release, release.project.services[0], prometheus)
    return writer(change)
