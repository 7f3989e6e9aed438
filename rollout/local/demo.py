"""`rollout demo`: the whole release loop on one machine, in minutes instead of days.

Real parts: Prometheus and Alertmanager (Debian binaries) on 127.0.0.1 with the stack's own
rendered rules and routing tree, the release bot's code unchanged (gates, decisions, hooks,
the Alertmanager adapter, the report). Stand-ins, because no cluster runs here: synthetic
Genesis pods (rollout.local.synthetic) instead of the app, and rollout.local.deployer instead of
`pulumi up` (it validates the same stage files and shifts the synthetic traffic weight).

Time is compressed: every stage's check interval, hold and progress deadline are shortened;
the thresholds, the consecutive-failure limit and the stage order are the stage files' own.
The canary turns bad once `fault_stage` is live (`fault="bad"`: errors, latency, failing
self-tests), or its pods stop being ready (`fault="never-ready"`: the kube-state-metrics
stand-in reports them unready and the canary exports nothing); the bot must roll back on its own.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterator

import httpx
from rich.console import Console
from rich.text import Text

from rollout.analysis.signals import selector
from rollout.config import ConfigError, load_release, load_stack_config
from rollout.local.deployer import LocalDeployer
from rollout.local.synthetic import KubeStateMetrics, Workload, target_labels
from rollout.model import Release, ServiceConfig, StackConfig, Stage, split_for
from rollout.monitoring.alert_rules import RULES_FILE, render_rule_file
from rollout.monitoring.alertmanager_config import render_alertmanager_config
from rollout.monitoring.names import LAST_CHECK_METRIC, STAGE_CHANGE_ALERT
from rollout.release.bot import ReleaseBot, TickOutcome
from rollout.release.deployer import DeployerError
from rollout.release.hooks import StageReportWriter
from rollout.release.metrics import BotMetrics
from rollout.release.notify import ROLLBACK_ALERT, AlertmanagerClient, ReleaseNotifier
from rollout.release.prometheus import Prometheus, PrometheusError
from rollout.review.localstack import (
    LocalStackError,
    Running,
    ScrapeTarget,
    WebhookReceiver,
    free_port,
    start_alertmanager,
    start_prometheus,
    wait_for,
)

REQUEST_RATE = 200.0  # synthetic requests per second for the whole service
FAULTS = ("bad", "never-ready")


class DemoError(RuntimeError):
    """The demo could not run (a missing binary, a bad stage file); the message says why."""


@dataclass
class DemoSummary:
    rolled_back: bool = False
    completed: bool = False
    fault_stage: str = ""
    fault_onset: datetime | None = None
    rollback_decided: datetime | None = None
    alert_received: bool = False
    alert_receivers: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)  # stage-change notices seen at the webhook
    rule_alerts: list[str] = field(default_factory=list)  # Prometheus alerts seen at the webhook
    bot_scraped: bool = False  # Prometheus holds the bot's last-check metric (the dead man's switch sees it)
    reports: list[Path] = field(default_factory=list)
    stages_seen: list[str] = field(default_factory=list)
    ticks: int = 0
    queries: int = 0
    seconds: float = 0.0

    @property
    def detection_seconds(self) -> float | None:
        if self.fault_onset and self.rollback_decided:
            return (self.rollback_decided - self.fault_onset).total_seconds()
        return None

    @property
    def ok(self) -> bool:
        return self.rolled_back and self.alert_received and bool(self.reports)


def compress(stage: Stage, check_seconds: float, hold_seconds: float) -> Stage:
    """The same stage with demo-sized time: checks every few seconds, a hold of seconds."""
    analysis = stage.analysis.model_copy(
        update={
            "check_interval": timedelta(seconds=check_seconds),
            "hold": timedelta(seconds=hold_seconds),
            "window": timedelta(seconds=check_seconds * 3),
            "progress_deadline": timedelta(seconds=check_seconds * 3),
        }
    )
    return stage.model_copy(update={"analysis": analysis})


def _now() -> datetime:
    return datetime.now(timezone.utc)


class _Printer:
    def __init__(self, console: Console, started: float):
        self.console = console
        self.started = started

    def __call__(self, text: str, style: str = "") -> None:
        line = Text(f"{time.monotonic() - self.started:6.1f}s ", style="dim")
        line.append(text, style=style)
        self.console.print(line, highlight=False, soft_wrap=True)


def for_demo(release: Release, check_seconds: float, hold_seconds: float) -> Release:
    """The release on the demo's time scale: compressed stages, and alert grouping of seconds so
    on-call hears of it in seconds."""
    alerting = release.project.monitoring.alerting.model_copy(
        update={"group_wait": timedelta(seconds=1), "group_interval": timedelta(seconds=2)}
    )
    monitoring = release.project.monitoring.model_copy(update={"alerting": alerting})
    return Release(
        project=release.project.model_copy(update={"monitoring": monitoring}),
        stages=[compress(s, check_seconds, hold_seconds) for s in release.stages],
    )


@dataclass
class LocalCluster:
    """What runs on loopback in place of the cluster: a real Prometheus and Alertmanager with the
    stack's rules and routing tree, synthetic pods of the first service, kube-state-metrics'
    stand-in, the bot's own metrics; `apply` is what `pulumi up` of a stage changes in it."""

    release: Release
    rules_path: Path
    webhook: WebhookReceiver
    alertmanager: Running
    prometheus: Running
    workloads: dict[str, Workload]
    kube_state: KubeStateMetrics
    bot_metrics: BotMetrics

    @property
    def service(self) -> ServiceConfig:
        return self.release.project.services[0]

    def stack_config(self, stage_name: str) -> StackConfig:
        return StackConfig(project=self.release.project, stage=self.release.stage(stage_name))

    def apply(self, config: StackConfig) -> None:
        """What `pulumi up` does in the cluster: replicas, route weights, the stage's PrometheusRule."""
        service = self.service
        split = split_for(config.project.routing.router, service.replicas, config.stage.weight)
        for track, workload in self.workloads.items():
            workload.set_weight(config.stage.weight)
            self.kube_state.set_replicas(service.namespace, f"{service.name}-{track}", split.replicas(track))
        self.rules_path.write_text(render_rule_file(self.stack_config(config.stage.name)))
        httpx.post(f"{self.prometheus.url}/-/reload", timeout=5.0).raise_for_status()

    def wait_for_stable_scrape(self, prom: Prometheus) -> None:
        series = "genesis_request_duration_seconds_count" + selector(self.service.name, "stable")
        wait_for(lambda: prom.series_exists(series), 120, "the first scrape of the stable track")  # a bound, not a wait: ~6 s idle


@contextlib.contextmanager
def local_cluster(release: Release, out_dir: Path) -> Iterator[LocalCluster]:
    """Start the servers (stopped again on exit, also on Ctrl-C or failure). `release` is already
    on the demo's time scale (`for_demo`)."""
    rules_path = out_dir / "rules" / RULES_FILE
    service = release.project.services[0]
    with contextlib.ExitStack() as stack:
        try:
            webhook = stack.enter_context(WebhookReceiver())
            alertmanager = stack.enter_context(start_alertmanager(
                render_alertmanager_config(release.project.monitoring, webhook_override=webhook.url)
            ))
            workloads = {
                track: stack.enter_context(Workload(track, request_rate=REQUEST_RATE, canary_weight=0, seed=seed))
                for seed, track in enumerate(("stable", "canary"), start=1)
            }
            kube_state = stack.enter_context(KubeStateMetrics())
            # the bot's own metrics, scraped like a watch pod's: the dead man's switch stays quiet
            bot_metrics = BotMetrics("demo", release)
            metrics_server = bot_metrics.serve(free_port(), "127.0.0.1")
            stack.callback(metrics_server.shutdown)
            rules_path.parent.mkdir(parents=True, exist_ok=True)
            rules_path.write_text(render_rule_file(
                StackConfig(project=release.project, stage=release.rollback_target)
            ))
            targets = [ScrapeTarget(w.address, target_labels(service, track)) for track, w in workloads.items()]
            targets.append(ScrapeTarget(kube_state.address, {}))
            targets.append(ScrapeTarget(f"127.0.0.1:{metrics_server.server_address[1]}", {}))
            prometheus = stack.enter_context(
                start_prometheus(rule_files=[rules_path], targets=targets, alertmanager_url=alertmanager.url)
            )
        except LocalStackError as err:
            raise DemoError(str(err)) from err
        yield LocalCluster(release, rules_path, webhook, alertmanager, prometheus, workloads, kube_state, bot_metrics)


def run_demo(
    project_dir: Path,
    out_dir: Path,
    *,
    fault_stage: str = "majority",
    fault: str = "bad",
    check_seconds: float = 2.0,
    hold_seconds: float = 12.0,
    timeout_seconds: float = 240.0,
    console: Console | None = None,
) -> DemoSummary:
    console = console or Console()
    say = _Printer(console, time.monotonic())
    try:
        release = load_release(project_dir)
    except ConfigError as err:
        raise DemoError(str(err)) from err
    demo_release = for_demo(release, check_seconds, hold_seconds)
    fault_kind = fault
    try:
        fault = demo_release.stage(fault_stage)
    except KeyError as err:
        raise DemoError(str(err.args[0])) from err
    if fault.weight == 0:
        raise DemoError(f"fault stage '{fault_stage}' sends no traffic to the canary")
    if fault_kind not in FAULTS:
        raise DemoError(f"unknown fault {fault_kind!r}; faults: {', '.join(FAULTS)}")

    out_dir.mkdir(parents=True, exist_ok=True)
    state_file = out_dir / "stack-state.json"
    state_file.unlink(missing_ok=True)  # each demo is a new release on a new "stack"
    summary = DemoSummary(fault_stage=fault_stage)
    started = time.monotonic()

    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(local_cluster(demo_release, out_dir))
        service, workloads, kube_state, webhook = cluster.service, cluster.workloads, cluster.kube_state, cluster.webhook
        say(f"Prometheus {cluster.prometheus.url}, Alertmanager {cluster.alertmanager.url}, webhook {webhook.url}")
        say(f"synthetic {service.name}: stable {workloads['stable'].address}, canary {workloads['canary'].address}")

        def load(project: Path, stage_name: str) -> StackConfig:
            load_stack_config(project, stage_name)  # the real stage file must validate
            return cluster.stack_config(stage_name)

        deployer = LocalDeployer(project_dir, state_file, cluster.apply, load=load)
        prom = stack.enter_context(Prometheus(cluster.prometheus.url))
        reporter = StageReportWriter(out_dir, demo_release, service, prom)
        notifier = ReleaseNotifier(
            app=service.name,
            namespace=service.namespace,
            runbook_base_url=release.project.monitoring.runbook_base_url,
            alertmanager=AlertmanagerClient(cluster.alertmanager.url),
            report_writer=reporter,
            weights={s.name: s.weight for s in demo_release.stages},
            dashboard_base_url=release.project.monitoring.grafana.public_url,
        )
        bot = ReleaseBot(demo_release, deployer, prom, hooks=[notifier])

        deployer.apply(demo_release.rollback_target.name, "demo: baseline before the release")
        cluster.wait_for_stable_scrape(prom)
        say("stable track scraped; a human starts the release", "bold")
        _show(say, bot.promote("demo: release started by hand"), summary)

        deadline = time.monotonic() + timeout_seconds
        try:
            while time.monotonic() < deadline:
                state = deployer.current()
                if state.stage == fault_stage and summary.fault_onset is None:
                    if _now() - state.since >= timedelta(seconds=check_seconds * 2):
                        if fault_kind == "never-ready":  # pods crash-looping: unready, silent
                            kube_state.set_ready(service.namespace, f"{service.name}-canary", False)
                            workloads["canary"].set_profile("silent")
                        else:
                            workloads["canary"].set_profile("bad")
                        summary.fault_onset = _now()
                        say(f"FAULT ({fault_kind}) injected into the canary at stage {fault_stage}", "bold red")
                started_tick = time.monotonic()
                outcome = bot.tick()
                cluster.bot_metrics.record(outcome, time.monotonic() - started_tick, time.time())
                summary.ticks += 1
                _show(say, outcome, summary)
                if outcome.decision.action == "rollback":
                    summary.rolled_back = True
                    summary.rollback_decided = _now()
                    break
                if outcome.decision.action == "complete":
                    summary.completed = True
                    break
                time.sleep(check_seconds / 2)
            else:
                raise DemoError(f"no rollback or completion within {timeout_seconds:g}s")
        except (DeployerError, PrometheusError) as err:
            raise DemoError(f"the bot stopped: {err}") from err

        if summary.rolled_back:
            def delivered(name: str = ROLLBACK_ALERT, **labels: str) -> set[str]:
                return {a["receiver"] for a in webhook.alerts() if a["labels"].get("alertname") == name
                        and all(a["labels"].get(k) == v for k, v in labels.items())}

            def at_every_receiver(name: str, **labels: str) -> bool:
                # every receiver Alertmanager's route tree chose, not whoever arrived within a fixed pause
                alerts = AlertmanagerClient(cluster.alertmanager.url).alerts({"alertname": name, **labels})
                routed = {r["name"] for a in alerts for r in a.get("receivers", [])}
                return bool(routed) and routed <= delivered(name, **labels)

            try:
                wait_for(lambda: at_every_receiver(ROLLBACK_ALERT) and at_every_receiver(STAGE_CHANGE_ALERT, action="rollback"),
                         120, "the rollback alert and notice at every receiver")
            except TimeoutError:
                say(f"the rollback alert did not reach every receiver (reached: {sorted(delivered()) or 'none'})", "red")
            else:
                summary.alert_received = True
                receivers = sorted(delivered())
                summary.alert_receivers = receivers
                say(f"on-call reached: {ROLLBACK_ALERT} delivered to {', '.join(receivers)}", "bold")
            summary.rule_alerts = sorted(
                {a["labels"].get("alertname", "?") for a in webhook.alerts()} - {ROLLBACK_ALERT, STAGE_CHANGE_ALERT}
            )
        summary.notices = sorted({
            f"{a['labels'].get('action')} to {a['labels'].get('stage')} via {a['receiver']}"
            for a in webhook.alerts() if a["labels"].get("alertname") == STAGE_CHANGE_ALERT
        })
        summary.reports = sorted(out_dir.glob("*.md"))
        summary.bot_scraped = prom.series_exists(LAST_CHECK_METRIC)
        summary.queries = prom.queries
    summary.seconds = time.monotonic() - started
    _print_summary(say, summary)
    return summary


def _show(say: Callable[..., None], outcome: TickOutcome, summary: DemoSummary) -> None:
    state = outcome.applied.stage if outcome.applied else outcome.state.stage
    if not summary.stages_seen or summary.stages_seen[-1] != state:
        summary.stages_seen.append(state)
    verdicts = " ".join(c.verdict for c in outcome.checks[-3:]) or "-"
    style = {"rollback": "bold red", "promote": "bold green", "complete": "bold green"}.get(
        outcome.decision.action, ""
    )
    say(f"{outcome.state.stage:<9} checks [{verdicts}] -> {outcome.decision.action}: {outcome.decision.reason}", style)
    for line in outcome.effects:
        say(f"  {line}")
    for line in outcome.warnings:
        say(f"  warning: {line}", "yellow")


def _print_summary(say: Callable[..., None], summary: DemoSummary) -> None:
    say("summary", "bold")
    say(f"  stages: {' -> '.join(summary.stages_seen)}")
    if summary.detection_seconds is not None:
        say(f"  fault onset -> rollback decision: {summary.detection_seconds:.1f}s")
    say(f"  rollback alert at the webhook: {'yes' if summary.alert_received else 'NO'}")
    if summary.rule_alerts:
        say(f"  Prometheus alerts routed to the webhook: {', '.join(summary.rule_alerts)}")
    for notice in summary.notices:
        say(f"  stage-change notice: {notice}")
    for path in summary.reports:
        say(f"  report: {path}")
    say(f"  {summary.ticks} ticks, {summary.queries} Prometheus queries, {summary.seconds:.0f}s in all")
    say("  demo " + ("passed" if summary.ok else "FAILED"), "bold green" if summary.ok else "bold red")
