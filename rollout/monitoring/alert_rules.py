"""Prometheus rule files generated from the stage model, so alert thresholds cannot drift from the gates.

One rule file per stage (`rule_groups`), two groups:
- recording rules: every signal in rollout.analysis.signals per (namespace, app, track), over the
  stage's Analysis.rate_window. They run every check interval, capped at 1m: a recorded sample
  older than Prometheus's 5m lookback is invisible to an instant query, so at a 5m interval
  the bot's queries and the dashboard would see gaps.
- alerts, evaluated every check interval with `for: Analysis.alert_for`, so an alert fires on
  the `consecutive_failures`-th bad check in a row, like the bot's rollback.
  * Day-0 rollback triggers on any track (critical): error rate, P95 latency, test pass rate.
  * the seed dashboard's alerts, while the subsystem's flag is on: SPICE task rate (warning),
    Pipelex success and fallback rate (warning below/above target, critical past the critical
    threshold), on the canary track while it has traffic, else (weight 0) on stable.
  * canary unavailable, per service: its Deployment has fewer ready than desired replicas for
    `analysis.progressDeadline` (kube-state-metrics), the bot's immediate rollback condition;
  * the router-measured error rate, when a stage sets that optional gate (critical);
  * the release bot silent: while the canary has traffic, no successful check for three check
    intervals (or its metric never seen for as long): a canary nobody watches (critical);
  * the judge failing: judged gates the bot's judge could not judge for a check interval (they
    hold; the thresholds still judge) (critical);
  * missing data, per service: no canary request series while the canary has traffic
    (critical: the bot and every canary alert are blind), no stable series while stable has
    traffic (warning); `for` is at least a rate window plus two scrapes (`missing_data_for`).
Every alert carries `severity` and a `runbook_url` to alerts/runbooks/<AlertName>.md.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path
from typing import Any, Sequence

import yaml

from rollout.analysis.signals import SIGNALS, selector, signal
from rollout.config import REPO_ROOT
from rollout.model import (
    Direction,
    Gate,
    MonitoringConfig,
    ServiceConfig,
    StackConfig,
    Stage,
    format_duration,
)
from rollout.monitoring.names import (
    BOT_SILENT_ALERT,
    JUDGE_ERRORS_METRIC,
    JUDGE_FAILING_ALERT,
    LAST_CHECK_METRIC,
    ROLLBACK_ALERT,
    ROLLBACK_FAILED_ALERT,
    STACK_LOCKED_ALERT,
    STACK_LOCKED_METRIC,
    STACK_LOCKED_SECONDS_METRIC,
    ROLLOUT_LABEL,
    ROLLOUT_VALUE,
)

RULES_FILE = "genesis-rollout.rules.yaml"
RECORDING_GROUP = "genesis-rollout.recording"
ALERT_GROUP = "genesis-rollout.alerts"
RECORDING_INTERVAL_CAP = timedelta(minutes=1)
BOT_SILENT_INTERVALS = 3  # check intervals without a successful check before the bot counts as gone
STACK_LOCKED_INTERVALS = 3  # check intervals the bot may find the stack locked before it pages
CANARY, STABLE = "canary", "stable"
SPICE_FLAG, PIPELEX_FLAG = "spice-task-generation", "pipelex-workflows"

# Alerts the release bot posts to Alertmanager itself (rollout.release.notify, not Prometheus rules),
# by severity; they carry source=release-bot (rollout.monitoring.names.SOURCE) and each has a runbook too.
RELEASE_BOT_ALERTS: dict[str, str] = {ROLLBACK_ALERT: "critical", ROLLBACK_FAILED_ALERT: "critical"}

RUNBOOK_DIR = REPO_ROOT / "alerts" / "runbooks"


# --------------------------------------------------------------------------- formatting


def _number(value: float) -> str:
    """A PromQL literal that round-trips the gate value exactly."""
    return repr(float(value))


def _shown(value: float, unit: str) -> str:
    """A threshold as people read it: 1%, 500ms, 1/min."""
    if unit == "ratio":
        return f"{value * 100:g}%"
    if unit == "seconds":
        return f"{value * 1000:g}ms" if value < 1 else f"{value:g}s"
    if unit == "per_minute":
        return f"{value:g}/min"
    return f"{value:g}/s"


# $value as people read it, in Prometheus's template language (humanize would print 0.5/min as "500m").
_VALUE = {
    "ratio": "{{ $value | humanizePercentage }}",
    "seconds": "{{ $value | humanizeDuration }}",
    "per_minute": '{{ $value | printf "%.2f" }}/min',
    "per_second": '{{ $value | printf "%.2f" }}/s',
}


def runbook_url(monitoring: MonitoringConfig, alert: str) -> str:
    return f"{monitoring.runbook_base_url.rstrip('/')}/{alert}.md"


# --------------------------------------------------------------------------- recording rules


def recording_interval(stage: Stage) -> timedelta:
    return min(stage.analysis.check_interval, RECORDING_INTERVAL_CAP)


def recording_rules(stage: Stage) -> list[dict[str, Any]]:
    window = stage.analysis.rate_window
    return [{"record": s.record, "expr": s.expr(window)} for s in SIGNALS]


# --------------------------------------------------------------------------- alerts


def missing_data_for(stage: Stage, monitoring: MonitoringConfig) -> timedelta:
    """`for` of the missing-data alerts: Analysis.alert_for, but never shorter than the time a
    series needs to appear after a (re)start or a new deployment (two scrapes inside the rate
    window), or every Prometheus restart would report missing data."""
    warm_up = stage.analysis.rate_window + 2 * monitoring.scrape_interval
    return max(stage.analysis.alert_for, warm_up)


def _alert(
    name: str,
    expr: str,
    severity: str,
    stage: Stage,
    monitoring: MonitoringConfig,
    summary: str,
    description: str,
    for_: timedelta | None = None,
    namespace: str | None = None,
) -> dict[str, Any]:
    """One alerting rule. `namespace`: a static namespace label, for an expression that
    aggregates it away (the bot's own series; see _bot_silent_alert)."""
    labels = {"severity": severity, ROLLOUT_LABEL: ROLLOUT_VALUE}
    if namespace is not None:
        labels["namespace"] = namespace
    return {
        "alert": name,
        "expr": expr,
        "for": format_duration(stage.analysis.alert_for if for_ is None else for_),
        # the label the routing tree matches: only our alerts reach our receivers
        "labels": labels,
        "annotations": {
            "summary": summary,
            "description": description,
            "runbook_url": runbook_url(monitoring, name),
        },
    }


def _threshold_alert(
    name: str,
    key: str,
    threshold: float,
    direction: Direction,
    severity: str,
    level: str,  # "target" or "critical threshold", for the description
    stage: Stage,
    monitoring: MonitoringConfig,
    track: str | None,
) -> dict[str, Any]:
    sig = signal(key)
    op, side = (">", "above") if direction is Direction.MAX else ("<", "below")
    matcher = "{" + f'track="{track}"' + "}" if track else ""
    where = "{{ $labels.namespace }}/{{ $labels.app }} ({{ $labels.track }} track)"
    value = _VALUE[sig.unit]
    return _alert(
        name,
        f"{sig.record}{matcher} {op} {_number(threshold)}",
        severity,
        stage,
        monitoring,
        summary=f"{sig.title} {side} {level} on {where}",
        description=(
            f"{sig.title} on {where} is {value}: {side} the {level} of "
            f"{_shown(threshold, sig.unit)} for {stage.analysis.consecutive_failures} checks in a row."
        ),
    )


def _gate_alerts(
    prefix: str,
    key: str,
    gate: Gate,
    stage: Stage,
    monitoring: MonitoringConfig,
    track: str | None,
    with_target: bool,
) -> list[dict[str, Any]]:
    """A warning at the gate's target (optional) and a critical alert past its critical threshold."""
    rules = []
    if with_target:
        suffix = "High" if gate.direction is Direction.MAX else "Low"
        rules.append(
            _threshold_alert(
                f"{prefix}{suffix}", key, gate.target, gate.direction, "warning", "target",
                stage, monitoring, track,
            )
        )
    if gate.critical is not None:
        rules.append(
            _threshold_alert(
                f"{prefix}Critical", key, gate.critical, gate.direction, "critical",
                "critical threshold", stage, monitoring, track,
            )
        )
    return rules


def _missing_data_alert(
    name: str,
    track: str,
    severity: str,
    services: Sequence[ServiceConfig],
    stage: Stage,
    monitoring: MonitoringConfig,
) -> list[dict[str, Any]]:
    """absent() needs exact labels, so one rule per service; they share the alert name."""
    # no stage name or weight in the text: promotion must not rewrite the rules (plan shows
    # only weights, replicas and flags changing); the rule exists only while the track has traffic
    wait = missing_data_for(stage, monitoring)
    impact = (
        "the release bot's gates and every canary alert are blind"
        if track == CANARY
        else "the stable baseline is missing from the checks and the dashboard"
    )
    record = signal("requests_per_second").record
    return [
        _alert(
            name,
            f"absent({record}{selector(svc.name, track, svc.namespace)})",
            severity,
            stage,
            monitoring,
            summary=f"No {track} request data for {svc.namespace}/{svc.name}",
            description=(
                f"The current stage sends traffic to the {track} track of "
                f"{svc.namespace}/{svc.name}, but Prometheus has recorded no request rate for it "
                f"for {format_duration(wait)}: {impact}."
            ),
            for_=wait,
        )
        for svc in services
    ]


def _bot_silent_alert(stage: Stage, monitoring: MonitoringConfig, services: Sequence[ServiceConfig]) -> list[dict[str, Any]]:
    """The dead man's switch: a stale last-check time (a Pushgateway keeps serving the last
    push), or no such series at all for as long (absent_over_time).

    Both aggregate the `namespace` label away, so the alert carries the first service's
    namespace as a static label: in existing mode the Prometheus Operator adds a
    `namespace="<its namespace>"` matcher to every AlertmanagerConfig route (default
    alertmanagerConfigMatcherStrategy OnNamespace; prometheus-operator v0.86.2
    pkg/alertmanager/amcfg.go, namespaceEnforcer.processRoute), and an alert without it would
    fall to the cluster's root receiver (`null` in the chart defaults)."""
    silence = stage.analysis.check_interval * BOT_SILENT_INTERVALS
    metric = f'{LAST_CHECK_METRIC}{{{ROLLOUT_LABEL}="{ROLLOUT_VALUE}"}}'
    window = format_duration(silence)
    return [_alert(
            BOT_SILENT_ALERT,
            f"time() - max({metric}) > {int(silence.total_seconds())} or absent_over_time({metric}[{window}])",
            "critical", stage, monitoring,
            summary=f"The release bot has not checked the canary for {window}",
            description=(
                f"The stage sends traffic to the canary, but the release bot has had no successful check for "
                f"{BOT_SILENT_INTERVALS} check intervals ({window}): nothing would roll back a failing canary. "
                "Is the scheduled tick running, can it reach Prometheus and the stack? "
                "Last check {{ $value | humanizeDuration }} ago (1s when its metric is gone)."
            ),
            for_=timedelta(0),
            namespace=services[0].namespace,
        )]


def _judge_failing_alert(
    stage: Stage, monitoring: MonitoringConfig, services: Sequence[ServiceConfig]
) -> list[dict[str, Any]]:
    """The judge could not judge some gates in the bot's newest checks for a check interval: they
    hold (no rollback, no promotion on them) while the threshold gates still judge. Rendered with
    every canary stage: without a judge the metric stays 0. Like the dead man's switch, it
    aggregates `namespace` away and carries the first service's as a static label (the
    Operator's namespace matcher on AlertmanagerConfig routes: see _bot_silent_alert)."""
    metric = f'{JUDGE_ERRORS_METRIC}{{{ROLLOUT_LABEL}="{ROLLOUT_VALUE}"}}'
    return [_alert(
            JUDGE_FAILING_ALERT, f"max({metric}) > 0", "critical", stage, monitoring,
            summary="The release bot's judge cannot judge {{ $value }} gate(s)",
            description=(
                "The sequential judge raised an error or could not read its counts for {{ $value }} gate(s) in "
                "the bot's newest check: those gates hold (the canary can neither be rolled back nor promoted on the judge's evidence), "
                "the threshold gates still judge. The check's gate messages (`rollout status`, `rollout tick "
                "--json`) say why."
            ),
            for_=stage.analysis.check_interval,
            namespace=services[0].namespace,
        )]


def _stack_locked_alert(
    stage: Stage, monitoring: MonitoringConfig, services: Sequence[ServiceConfig]
) -> list[dict[str, Any]]:
    """A stack the bot has found locked at every tick for a few check intervals: a live update
    that takes unusually long, or a dead one whose lock blocks every later tick (and rollback)."""
    metric = f'{STACK_LOCKED_METRIC}{{{ROLLOUT_LABEL}="{ROLLOUT_VALUE}"}}'
    seconds = f'{STACK_LOCKED_SECONDS_METRIC}{{{ROLLOUT_LABEL}="{ROLLOUT_VALUE}"}}'
    window = format_duration(stage.analysis.check_interval * STACK_LOCKED_INTERVALS)
    return [_alert(
            STACK_LOCKED_ALERT,
            # the value is how long the bot's process has seen it locked (0 from a one-shot `tick`)
            f"max by (stack) ({seconds}) and max by (stack) ({metric}) == 1",
            "critical", stage, monitoring,
            summary=f"The Pulumi stack {{{{ $labels.stack }}}} has been locked for {window}",
            description=(
                f"Every tick of the release bot for {STACK_LOCKED_INTERVALS} check intervals ({window}) found the "
                "stack locked by an update: the bot can neither promote nor roll back until it is released. "
                "A live update that is slow, or one that died and left its lock (a killed `pulumi up`): "
                "the runbook says how to tell and when `pulumi cancel` is safe. The bot has seen it locked "
                "for {{ $value | humanizeDuration }}."
            ),
            for_=stage.analysis.check_interval * STACK_LOCKED_INTERVALS,
            # aggregated by stack: a static namespace label, as the dead man's switch (the Operator's matcher)
            namespace=services[0].namespace,
        )]


def _canary_unavailable_alert(
    services: Sequence[ServiceConfig], stage: Stage, monitoring: MonitoringConfig
) -> list[dict[str, Any]]:
    """Per service (the recording rule covers every <app>-<track> Deployment it sees)."""
    record = signal("deployment_available").record
    deadline = format_duration(stage.analysis.progress_deadline)
    return [
        _alert(
            "GenesisCanaryUnavailable",
            f"{record}{selector(svc.name, CANARY, svc.namespace)} < 1",
            "critical",
            stage,
            monitoring,
            summary=f"Canary of {svc.namespace}/{svc.name} not fully available for {deadline}",
            description=(
                f"Only {{{{ $value | humanizePercentage }}}} of the canary Deployment's desired replicas "
                f"of {svc.namespace}/{svc.name} have been ready for {deadline} (the progress "
                "deadline) while the route sends it traffic: the release bot rolls it back."
            ),
            for_=stage.analysis.progress_deadline,
        )
        for svc in services
    ]


def alert_rules(
    stage: Stage, monitoring: MonitoringConfig, services: Sequence[ServiceConfig]
) -> list[dict[str, Any]]:
    gates = stage.gates
    rules: list[dict[str, Any]] = []
    # Day-0 rollback triggers: on every track (a failing stable track matters too).
    rules += _gate_alerts("GenesisErrorRate", "error_rate", gates.error_rate, stage, monitoring, None, False)
    rules += _gate_alerts(
        "GenesisP95Latency", "p95_latency_seconds", gates.p95_latency_seconds, stage, monitoring, None, False
    )
    rules += _gate_alerts(
        "GenesisTestPassRate", "test_pass_rate", gates.test_pass_rate, stage, monitoring, None, False
    )
    # SPICE/Pipelex alerts watch the track being released: the canary while it has traffic. At a
    # weight-0 stage with the flags on (a completed release made them the baseline) they watch stable.
    canary_live = stage.weight > 0
    subsystem_track = CANARY if canary_live else STABLE
    if stage.flags.enabled(SPICE_FLAG):
        rules += _gate_alerts(
            "GenesisSpiceTaskRate", "spice_tasks_per_minute", gates.spice_tasks_per_minute,
            stage, monitoring, subsystem_track, True,
        )
    if stage.flags.enabled(PIPELEX_FLAG):
        rules += _gate_alerts(
            "GenesisPipelexSuccess", "pipelex_success_rate", gates.pipelex_success_rate,
            stage, monitoring, subsystem_track, True,
        )
        rules += _gate_alerts(
            "GenesisFallbackRate", "fallback_rate", gates.fallback_rate, stage, monitoring, subsystem_track, True
        )
    if gates.router_error_rate is not None:
        rules += _gate_alerts(
            "GenesisRouterErrorRate", "router_error_rate", gates.router_error_rate, stage, monitoring, None, False
        )
    if canary_live:
        rules += _bot_silent_alert(stage, monitoring, services)
        rules += _judge_failing_alert(stage, monitoring, services)
        rules += _canary_unavailable_alert(services, stage, monitoring)
        rules += _missing_data_alert("GenesisCanaryDataMissing", CANARY, "critical", services, stage, monitoring)
    rules += _stack_locked_alert(stage, monitoring, services)  # at every stage: a locked stack blocks every change
    if stage.weight < 100:
        rules += _missing_data_alert("GenesisStableDataMissing", STABLE, "warning", services, stage, monitoring)
    return rules


# --------------------------------------------------------------------------- public API


def recording_group(stage: Stage) -> dict[str, Any]:
    """The stage's recording rules as one rule group (the alerts read them; so does a replay)."""
    return {"name": RECORDING_GROUP, "interval": format_duration(recording_interval(stage)),
            "rules": recording_rules(stage)}


def rule_groups(
    stage: Stage, monitoring: MonitoringConfig, services: Sequence[ServiceConfig]
) -> dict[str, Any]:
    """The rule file document {"groups": [...]}; also the `spec` of a PrometheusRule."""
    return {
        "groups": [
            recording_group(stage),
            {
                "name": ALERT_GROUP,
                "interval": format_duration(stage.analysis.check_interval),
                "rules": alert_rules(stage, monitoring, services),
            },
        ]
    }


def stack_rule_groups(config: StackConfig) -> dict[str, Any]:
    return rule_groups(config.stage, config.project.monitoring, config.project.services)


def render_rule_file(config: StackConfig) -> str:
    header = (
        f"# Generated by rollout.monitoring.alert_rules for stage '{config.stage.name}' "
        f"({config.stage.weight}% canary). Do not edit by hand:\n"
        f"# regenerate with `uv run python -m rollout.monitoring.alert_rules {config.stage.name}` (see alerts/README.md).\n"
    )
    body = yaml.safe_dump(stack_rule_groups(config), sort_keys=False, width=10_000, allow_unicode=True)
    return header + body


def write_rules(config: StackConfig, out_dir: Path | str) -> Path:
    """Write out_dir/alerts/genesis-rollout.rules.yaml and return its path."""
    path = Path(out_dir) / "alerts" / RULES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_rule_file(config))
    return path


def alert_names(document: dict[str, Any]) -> list[str]:
    """Distinct alert names of a rule document, in order."""
    names: list[str] = []
    for group in document["groups"]:
        for rule in group["rules"]:
            if "alert" in rule and rule["alert"] not in names:
                names.append(rule["alert"])
    return names


def missing_runbooks(names: Sequence[str], runbook_dir: Path = RUNBOOK_DIR) -> list[str]:
    return [name for name in names if not (runbook_dir / f"{name}.md").is_file()]


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m rollout.monitoring.alert_rules [stage]`: regenerate the committed alerts/genesis-rollout.rules.yaml."""
    from rollout.config import load_stack_config

    args = list(sys.argv[1:] if argv is None else argv)
    stage = args[0] if args else CANARY
    path = write_rules(load_stack_config(REPO_ROOT, stage), REPO_ROOT)
    print(f"wrote {path.relative_to(REPO_ROOT)} for stage {stage}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
