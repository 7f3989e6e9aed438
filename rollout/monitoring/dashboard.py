"""The release dashboard, built with Grafana's foundation SDK (pinned 0.0.21, schemaVersion 42).

Every gate panel plots the recording rule of rollout.analysis.signals (the number the bot judges) per
(app, track), so stable and canary sit side by side on one axis, and draws the stage's gate
target and critical threshold from rollout.model as threshold lines. Panel ids are fixed so
diffs of the committed JSON stay readable.

Regenerate the committed JSON:  uv run python -m rollout.monitoring.dashboard
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

with warnings.catch_warnings():
    # the classic (v1) Dashboard builder warns that v2 exists; v1 JSON is what the Grafana
    # sidecar and the Grafana provider's config_json take
    warnings.simplefilter("ignore", DeprecationWarning)
    from grafana_foundation_sdk.builders import common as viz
    from grafana_foundation_sdk.builders import dashboard as dash
    from grafana_foundation_sdk.builders import (
        prometheus,
        stat,
        statetimeline,
        table,
        text,
        timeseries,
    )
    from grafana_foundation_sdk.cog import builder as cogbuilder
    from grafana_foundation_sdk.cog import variants as cogvariants
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models import common
    from grafana_foundation_sdk.models import dashboard as model
    from grafana_foundation_sdk.models import prometheus as prom_model
    from grafana_foundation_sdk.models import text as text_model

from rollout.analysis.signals import Signal, signal
from rollout.model import (
    Direction,
    Gate,
    MinRatioGate,
    MonitoringConfig,
    StackConfig,
    Stage,
    format_duration,
)
from rollout.monitoring.names import (
    ANNOTATION_TAGS,
    APPROVAL_METRIC,
    APPROVAL_VALUES,
    BOT_SILENT_ALERT,
    CHECK_DURATION_METRIC,
    CHECK_VERDICT_METRIC,
    DASHBOARD_UID,
    DECISION_METRIC,
    GATE_VERDICT_METRIC,
    JUDGE_EVIDENCE_METRIC,
    JUDGE_RATIO_METRIC,
    JUDGE_THRESHOLD_METRIC,
    LAST_CHECK_METRIC,
    NEXT_PROMOTION_METRIC,
    PAUSED_METRIC,
    PRODUCT_TAG,
    ROLLBACK_ALERT,
    ROLLBACK_FAILED_ALERT,
    ROLLOUT_LABEL,
    ROLLOUT_VALUE,
    STAGE_INFO_METRIC,
    VERDICT_VALUES,
    WEIGHT_METRIC,
)

UID = DASHBOARD_UID
TITLE = "Genesis release"
TAGS = ["genesis-rollout"]
# Filters for the annotations the release bot posts (rollout.monitoring.names.annotation_tags)
DEPLOYMENT_TAGS = list(ANNOTATION_TAGS)
ROLLBACK_TAGS = [PRODUCT_TAG, "rollback"]
# The stage the committed dashboards/genesis-release.json is rendered for.
COMMITTED_STAGE = "canary"

TRACK_COLORS = {"stable": "green", "canary": "orange"}
TARGET_COLOR = "yellow"
CRITICAL_COLOR = "red"
HEALTHY_COLOR = "green"

DATASOURCE = common.DataSourceRef(type_val="prometheus", uid="${datasource}")
GRAFANA_DATASOURCE = common.DataSourceRef(type_val="grafana", uid="-- Grafana --")
MATCHERS = 'app=~"$app", track=~"$track"'
LEGEND = "{{app}} {{track}}"

Query = cogbuilder.Builder[cogvariants.Dataquery]
UNITS = {"ratio": "percentunit", "seconds": "s", "per_second": "reqps", "per_minute": "suffix: /min"}


# --------------------------------------------------------------------------- queries


def series_query(sig: Signal, ref_id: str = "A", legend: str = LEGEND) -> Query:
    """The recording rule for one signal, one series per (app, track)."""
    return (
        prometheus.Dataquery()
        .ref_id(ref_id)
        .expr(f"{sig.record}{{{MATCHERS}}}")
        .legend_format(legend)
        .range()
    )


def instant_query(expr: str, ref_id: str = "A", legend: str = "") -> Query:
    query = prometheus.Dataquery().ref_id(ref_id).expr(expr).instant().format(
        prom_model.PromQueryFormat.TABLE if not legend else prom_model.PromQueryFormat.TIME_SERIES
    )
    return query.legend_format(legend) if legend else query


# --------------------------------------------------------------------------- thresholds


def gate_thresholds(gate: Gate) -> dash.ThresholdsConfig:
    """Steps coloring the healthy side green, past the target yellow and past critical red."""
    if gate.direction is Direction.MAX:
        steps = [model.Threshold(value=None, color=HEALTHY_COLOR)]
        steps.append(model.Threshold(value=gate.target, color=TARGET_COLOR))
        if gate.critical is not None:
            steps.append(model.Threshold(value=gate.critical, color=CRITICAL_COLOR))
    else:
        # a minimum: low is bad, so the base colour is the worst and the target turns it green
        base = CRITICAL_COLOR if gate.critical is not None else TARGET_COLOR
        steps = [model.Threshold(value=None, color=base)]
        if gate.critical is not None:
            steps.append(model.Threshold(value=gate.critical, color=TARGET_COLOR))
        steps.append(model.Threshold(value=gate.target, color=HEALTHY_COLOR))
    return dash.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps(steps)


def track_overrides(panel: timeseries.Panel, after: str = "") -> timeseries.Panel:
    """Same colour per track on every panel, so canary vs stable reads at a glance. The legend
    names end in the track, or in the track and `after` (a regexp: the quantile, the version)."""
    for track, color in TRACK_COLORS.items():
        panel = panel.override_by_regexp(
            f".* {track}{after}$",
            [model.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": color})],
        )
    return panel


# --------------------------------------------------------------------------- panels


def gate_panel(panel_id: int, key: str, gate: Gate, pos: tuple[int, int, int, int]) -> timeseries.Panel:
    sig = signal(key)
    return _gate_timeseries(panel_id, sig.title, [series_query(sig)], sig.unit, gate, pos, _gate_text(key, gate))


def latency_keys(stage: Stage) -> list[str]:
    """The latency quantiles the stage's gates judge (P95 in the plan): only these are plotted,
    one stable and one canary line each, so the panel stays readable."""
    return [name for name, _ in stage.gates.items() if signal(name).unit == "seconds"]


def latency_panel(panel_id: int, stage: Stage, pos: tuple[int, int, int, int]) -> timeseries.Panel:
    keys = latency_keys(stage)
    labels = [key.split("_")[0] for key in keys]  # p95_latency_seconds -> p95
    queries = [
        series_query(signal(key), chr(ord("A") + i), f"{{{{app}}}} {{{{track}}}} {label}")
        for i, (key, label) in enumerate(zip(keys, labels))
    ]
    gate = getattr(stage.gates, keys[0])
    panel = _gate_timeseries(
        panel_id, "Latency " + " / ".join(label.upper() for label in labels), queries, "seconds", gate, pos,
        _gate_text(keys[0], gate) + f" One stable and one canary line per quantile a gate judges; "
        f"threshold lines apply to {labels[0].upper()}.",
    )
    return track_overrides(panel, after=" p\\d+")  # latency names end in the quantile (pNN)


def _gate_text(key: str, gate: Gate) -> str:
    word = "at most" if gate.direction is Direction.MAX else "at least"
    critical = f", critical {gate.critical:g}" if gate.critical is not None else ", no critical threshold"
    return (
        f"Recording rule {signal(key).record} per app and track. "
        f"Gate {key}: {word} {gate.target:g} (target){critical}."
    )


def _gate_timeseries(
    panel_id: int,
    title: str,
    queries: list[Query],
    unit: str,
    gate: Gate,
    pos: tuple[int, int, int, int],
    description: str,
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .id(panel_id)
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(queries)
        .unit(UNITS[unit])
        .thresholds(gate_thresholds(gate))
        .thresholds_style(viz.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED))
        .grid_pos(_grid(pos))
        .legend(viz.VizLegendOptions().display_mode(common.LegendDisplayMode.TABLE).placement(
            common.LegendPlacement.BOTTOM).show_legend(True).calcs(["lastNotNull", "max"]))
        .tooltip(viz.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI).sort(common.SortOrder.DESCENDING))
    )
    if unit == "ratio":
        panel = panel.min(0).max(1)
    else:
        panel = panel.min(0)
    return track_overrides(panel) if len(queries) == 1 else panel


def request_rate_panel(panel_id: int, pos: tuple[int, int, int, int]) -> timeseries.Panel:
    sig = signal("requests_per_second")
    panel = (
        timeseries.Panel()
        .id(panel_id)
        .title("Request rate per track")
        .description(f"Recording rule {sig.record}: requests per second on each track.")
        .datasource(DATASOURCE)
        .targets([series_query(sig)])
        .unit(UNITS[sig.unit])
        .min(0)
        .fill_opacity(20)
        .stacking(viz.StackingConfig().mode(common.StackingMode.NORMAL))
        .grid_pos(_grid(pos))
    )
    return track_overrides(panel)


def canary_weight_panel(panel_id: int, pos: tuple[int, int, int, int]) -> timeseries.Panel:
    """The traffic split as measured: the canary's share of the service's requests.

    Measured from the app's own request histogram rather than a published setting, so it shows
    what the router really does, in every stage, and the panel does not change between stages.
    """
    rate = signal("requests_per_second").record
    expr = (
        f'100 * sum by (app) ({rate}{{app=~"$app", track="canary"}}) '
        f'/ sum by (app) ({rate}{{app=~"$app"}})'
    )
    return (
        timeseries.Panel()
        .id(panel_id)
        .title("Canary traffic share (measured)")
        .description(
            "Percent of requests served by the canary track, from the request-rate recording rule. "
            "Compare with the stage's planned weight; stage changes show as annotations."
        )
        .datasource(DATASOURCE)
        .targets([
            prometheus.Dataquery()
            .ref_id("A")
            .expr(expr)
            .legend_format("{{app}}")
            .range()
        ])
        .unit("percent")
        .min(0)
        .max(100)
        .line_interpolation(common.LineInterpolation.STEP_AFTER)
        .grid_pos(_grid(pos))
    )


def canary_requests_panel(panel_id: int, stage: Stage, pos: tuple[int, int, int, int]) -> stat.Panel:
    """Requests the canary served in one analysis window: below the minimum the bot holds."""
    sig = signal("requests_per_second")
    window = stage.analysis.rate_window
    minimum = stage.analysis.min_canary_requests
    expr = (
        f'sum by (app) ({sig.record}{{app=~"$app", track="canary"}}) '
        f"* {int(window.total_seconds())}"
    )
    steps = [model.Threshold(value=None, color=TARGET_COLOR), model.Threshold(value=float(minimum), color=HEALTHY_COLOR)]
    return (
        stat.Panel()
        .id(panel_id)
        .title(f"Canary requests per {format_duration(window)} window")
        .description(
            f"Below {minimum} canary requests in a {format_duration(window)} window the bot's verdict is "
            "'hold': too little data to judge."
        )
        .datasource(DATASOURCE)
        .targets([instant_query(expr, legend="{{app}}")])
        .unit("short")
        .decimals(0)
        .thresholds(dash.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps(steps))
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .grid_pos(_grid(pos))
    )


def availability_panel(panel_id: int, stage: Stage, pos: tuple[int, int, int, int]) -> timeseries.Panel:
    """Ready / desired replicas of each track's Deployment (kube-state-metrics): a canary below 1
    for the whole progress deadline is rolled back at once."""
    sig = signal("deployment_available")
    deadline = format_duration(stage.analysis.progress_deadline)
    full = MinRatioGate(target=1.0, critical=1.0)
    return _gate_timeseries(
        panel_id, "Deployment availability (ready / desired)", [series_query(sig)], sig.unit, full, pos,
        f"Recording rule {sig.record} per app and track, from kube-state-metrics. A canary below 1 "
        f"for the whole progress deadline ({deadline}) fails the check and rolls back at once.",
    )


OURS = f'{{{ROLLOUT_LABEL}="{ROLLOUT_VALUE}"}}'  # the bot's own series carry this label
VERDICT_COLORS = {"pass": HEALTHY_COLOR, "hold": TARGET_COLOR, "fail": CRITICAL_COLOR}


def _mappings(values: dict[str, int], colors: dict[str, str]) -> list[model.ValueMapping]:
    """Numbers the bot publishes shown as words in colours (0 -> pass, green, ...)."""
    return [model.ValueMap(options={
        str(number): model.ValueMappingResult(text=word, color=colors[word], index=index)
        for index, (word, number) in enumerate(values.items())
    })]


def _bot_stat(panel_id: int, title: str, description: str, queries: list[Query], pos: tuple[int, int, int, int]) -> stat.Panel:
    return (
        stat.Panel()
        .id(panel_id)
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(queries)
        .graph_mode(common.BigValueGraphMode.NONE)
        .grid_pos(_grid(pos))
    )


def bot_status_panels(stage: Stage, y: int) -> list[Any]:
    """The first line of the top row: where the release is and what is next, from the bot's
    own metrics (rollout.release.metrics)."""
    interval = stage.analysis.check_interval.total_seconds()
    rate = signal("requests_per_second").record
    stage_now = _bot_stat(
        19, "Stage", f"{STAGE_INFO_METRIC}: the stage the stack is at, as the bot's newest tick read it.",
        [instant_query(f"max by (stage) ({STAGE_INFO_METRIC}{OURS}) == 1", legend="{{stage}}")], (0, y, 4, 5),
    ).text_mode(common.BigValueTextMode.NAME).no_value("no bot data")
    weight = _bot_stat(
        20, "Canary weight: planned / measured",
        f"Planned: {WEIGHT_METRIC}, the stage's weight. Measured: the canary's share of the requests the "
        "selected services served (request-rate recording rule), what the router really does.",
        [
            instant_query(f"max({WEIGHT_METRIC}{OURS})", "A", "planned"),
            instant_query(
                f'100 * sum({rate}{{app=~"$app", track="canary"}}) / sum({rate}{{app=~"$app"}})', "B", "measured"),
        ],
        (4, y, 6, 5),
    ).unit("percent").decimals(1).text_mode(common.BigValueTextMode.VALUE_AND_NAME)
    approval_colors = {"not needed": "text", "needed": TARGET_COLOR, "given": HEALTHY_COLOR}
    controls = _bot_stat(
        21, "Paused / approval",
        f"{PAUSED_METRIC}: automatic promotion paused (`rollout pause`; rollbacks continue). "
        f"{APPROVAL_METRIC}: the next stage's approval (`rollout approve <stage>`).",
        [
            instant_query(f"max({PAUSED_METRIC}{OURS})", "A", "paused"),
            instant_query(f"max by (stage) ({APPROVAL_METRIC}{OURS})", "B", "approval {{stage}}"),
        ],
        (10, y, 5, 5),
    ).text_mode(common.BigValueTextMode.VALUE_AND_NAME).override_by_name(
        "paused", [model.DynamicConfigValue(id_val="mappings", value=[{"type": "value", "options": {
            "0": {"text": "no", "color": "text", "index": 0}, "1": {"text": "PAUSED", "color": TARGET_COLOR, "index": 1}}}])],
    ).mappings(_mappings(APPROVAL_VALUES, approval_colors)).color_mode(common.BigValueColorMode.VALUE)
    promotion = _bot_stat(
        22, "Time to the next promotion",
        f"{NEXT_PROMOTION_METRIC} - now: when the stage's hold ends and the bot promotes if the checks keep "
        "passing (0: due now, waiting for passing checks, an approval or the promotion hours). Empty at "
        "stable and after a rollback decision.",
        [instant_query(f"clamp_min(max({NEXT_PROMOTION_METRIC}{OURS}) - time(), 0)", legend="next promotion")],
        (15, y, 4, 5),
    ).unit("s").decimals(0).no_value("none planned")
    since = _bot_stat(
        14, "Since the bot's last successful check",
        f"{LAST_CHECK_METRIC}: the bot publishes it after every tick that ran its checks. "
        f"{BOT_SILENT_ALERT} pages at {format_duration(stage.analysis.check_interval * 3)}.",
        [instant_query(f"time() - max({LAST_CHECK_METRIC}{OURS})", legend="last check")],
        (19, y, 5, 5),
    ).unit("s").decimals(0).thresholds(dash.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps([
        model.Threshold(value=None, color=HEALTHY_COLOR),
        model.Threshold(value=2 * interval, color=TARGET_COLOR),
        model.Threshold(value=3 * interval, color=CRITICAL_COLOR),
    ])).color_mode(common.BigValueColorMode.BACKGROUND)
    return [stage_now, weight, controls, promotion, since]


def verdict_timeline_panel(panel_id: int, pos: tuple[int, int, int, int]) -> statetimeline.Panel:
    """Every check's verdict over time, and each gate's, as words in colours."""
    return (
        statetimeline.Panel()
        .id(panel_id)
        .title("Check verdicts")
        .description(
            f"{CHECK_VERDICT_METRIC} (the whole check) and {GATE_VERDICT_METRIC} (each gate) in the bot's newest "
            "check: pass when every target is met, hold when one is missed or data is missing, fail on a "
            "critical breach of a rollback gate."
        )
        .datasource(DATASOURCE)
        .targets([
            prometheus.Dataquery().ref_id("A").expr(f"max({CHECK_VERDICT_METRIC}{OURS})").legend_format("check").range(),
            prometheus.Dataquery().ref_id("B").expr(f"max by (gate) ({GATE_VERDICT_METRIC}{OURS})")
            .legend_format("{{gate}}").range(),
        ])
        .mappings(_mappings(VERDICT_VALUES, VERDICT_COLORS))
        .show_value(common.VisibilityMode.AUTO)
        .merge_values(True)
        .grid_pos(_grid(pos))
    )


def _over_time(panel_id: int, title: str, description: str, expr: str, legend: str,
               pos: tuple[int, int, int, int]) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .id(panel_id)
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets([prometheus.Dataquery().ref_id("A").expr(expr).legend_format(legend).range()])
        .min(0)
        .line_interpolation(common.LineInterpolation.STEP_AFTER)
        .grid_pos(_grid(pos))
    )


def decisions_panel(panel_id: int, pos: tuple[int, int, int, int]) -> timeseries.Panel:
    return _over_time(
        panel_id, "Bot decisions", f"{DECISION_METRIC}: 1 for the action the newest tick decided.",
        f"max by (action) ({DECISION_METRIC}{OURS})", "{{action}}", pos,
    ).max(1)


def check_duration_panel(panel_id: int, stage: Stage, pos: tuple[int, int, int, int]) -> timeseries.Panel:
    interval = stage.analysis.check_interval
    return _over_time(
        panel_id, "Check duration",
        f"{CHECK_DURATION_METRIC}: seconds each tick spent measuring (all of a check's queries). A check "
        f"runs every {format_duration(interval)}.",
        f"max({CHECK_DURATION_METRIC}{OURS})", "check", pos,
    ).unit("s")


def act_panel(panel_id: int, monitoring: MonitoringConfig, pos: tuple[int, int, int, int]) -> text.Panel:
    """What on-call needs at hand: the rollback command, the runbooks and the latest reports."""
    runbooks = monitoring.runbook_base_url.rstrip("/")
    links = " · ".join(
        f"[{alert}]({runbooks}/{alert}.md)" for alert in (ROLLBACK_ALERT, ROLLBACK_FAILED_ALERT, BOT_SILENT_ALERT)
    )
    content = (
        "**Roll back now** (the bot applies `stable` in its safe order and tells everyone):\n\n"
        '`rollout rollback --reason "<why>"`\n\n'
        "By hand: `rollout plan <stage> stable` prints the `pulumi up` commands in order. "
        "Stop promotions only: `rollout pause --reason \"<why>\"`.\n\n"
        f"**Runbooks:** [all]({runbooks}) · {links}\n\n"
        f"**Latest reports** (stage and incident reports, plots): [{monitoring.reports_url}]({monitoring.reports_url})\n"
    )
    return (
        text.Panel()
        .id(panel_id)
        .title("Act: rollback, runbooks, reports")
        .mode(text_model.TextMode.MARKDOWN)
        .content(content)
        .grid_pos(_grid(pos))
    )


def judge_panels(y: int) -> list[Any]:
    """The sequential judge's evidence and ratio per judged gate (docs/judge.md)."""
    evidence = (
        timeseries.Panel()
        .id(17)
        .title("Judge: evidence that the canary is worse than stable (log scale)")
        .description(
            f"{JUDGE_EVIDENCE_METRIC}: the sequential judge's e-value per judged gate in the bot's newest check. "
            f"It declares a regression, and the bot rolls back at once, when it reaches the gate's "
            f"{JUDGE_THRESHOLD_METRIC} (1/alpha). Below 1 the data favour 'no worse than stable'. See docs/judge.md."
        )
        .datasource(DATASOURCE)
        .targets([
            prometheus.Dataquery().ref_id("A").expr(f"max by (gate) ({JUDGE_EVIDENCE_METRIC}{OURS})")
            .legend_format("{{gate}}").range(),
            prometheus.Dataquery().ref_id("B").expr(f"max by (gate) ({JUDGE_THRESHOLD_METRIC}{OURS})")
            .legend_format("{{gate}}: regression at").range(),
        ])
        .scale_distribution(viz.ScaleDistributionConfig().type(common.ScaleDistribution.LOG).log(10))
        .line_interpolation(common.LineInterpolation.STEP_AFTER)
        .grid_pos(_grid((0, y, 12, 8)))
    )
    ratio = _over_time(
        18, "Judge: canary/stable ratio with its confidence sequence",
        f"{JUDGE_RATIO_METRIC}: the estimated canary/stable ratio (error rate, failed workflows, fallbacks; "
        "for latency the share of requests slower than the bucket nearest stable's P95) and its anytime-valid "
        "confidence bounds. 1 = as good as stable.",
        f"max by (gate, bound) ({JUDGE_RATIO_METRIC}{OURS})", "{{gate}} {{bound}}", (12, y, 12, 8),
    )
    return [evidence, ratio]


# --------------------------------------------------------------------------- pods per version

# Our ServiceMonitor copies the pod labels app, track and version onto every target (podTargetLabels),
# so `up` names each scraped pod's version; cAdvisor and kube-state-metrics series carry only
# namespace and pod. Joining on (namespace, pod) gives them the version without relabelling
# kube-state-metrics (`group` is 1 per pod, so the value is unchanged).
POD_VERSION = 'group by (namespace, pod, app, track, version) (up{app=~"$app", track=~"$track"})'
BY_VERSION = "sum by (app, track, version)"


def _per_version(expr: str) -> str:
    return f"{BY_VERSION} ({expr} * on (namespace, pod) group_left (app, track, version) {POD_VERSION})"


def pod_panels(y: int) -> list[Any]:
    """Restarts, CPU and memory of each version's pods (kube-state-metrics and cAdvisor, which
    kube-prometheus-stack scrapes), so a canary that crash-loops or leaks shows beside stable."""
    legend = "{{app}} {{track}} {{version}}"

    def panel(panel_id: int, title: str, description: str, expr: str, unit: str, x: int) -> timeseries.Panel:
        return track_overrides(
            timeseries.Panel()
            .id(panel_id)
            .title(title)
            .description(description)
            .datasource(DATASOURCE)
            .targets([prometheus.Dataquery().ref_id("A").expr(_per_version(expr)).legend_format(legend).range()])
            .unit(unit)
            .min(0)
            .grid_pos(_grid((x, y, 8, 8))),
            after=" [^ ]+",  # the version
        )

    return [
        panel(25, "Pod restarts per version (1h)",
              "kube_pod_container_status_restarts_total (kube-state-metrics): container restarts in the last hour, "
              "per app, track and version.",
              "increase(kube_pod_container_status_restarts_total[1h])", "short", 0),
        panel(26, "CPU per version",
              "container_cpu_usage_seconds_total (cAdvisor): CPU cores used by the version's containers.",
              'rate(container_cpu_usage_seconds_total{container!="", container!="POD"}[5m])', "short", 8),
        panel(27, "Memory per version",
              "container_memory_working_set_bytes (cAdvisor): working set of the version's containers, "
              "what the kubelet compares with the memory limit.",
              'container_memory_working_set_bytes{container!="", container!="POD"}', "bytes", 16),
    ]


def active_alerts_panel(panel_id: int, pos: tuple[int, int, int, int]) -> table.Panel:
    expr = 'sum by (alertname, severity, app, track) (ALERTS{alertstate="firing", app=~"$app"})'
    return (
        table.Panel()
        .id(panel_id)
        .title("Active alerts")
        .description("Alerts firing in Prometheus for the selected services (the ALERTS series).")
        .datasource(DATASOURCE)
        .targets([instant_query(expr)])
        .no_value("No alerts firing")
        .grid_pos(_grid(pos))
    )


def stage_panel(panel_id: int, stage: Stage, pos: tuple[int, int, int, int]) -> text.Panel:
    """The gates the threshold lines show. No stage name or weight here: the dashboard stays the
    same while promotion changes only the weight (the `stage` variable and annotations tell it)."""
    analysis = stage.analysis
    rows = "\n".join(
        f"| {name} | {'max' if gate.direction is Direction.MAX else 'min'} | {gate.target:g} | "
        f"{'-' if gate.critical is None else f'{gate.critical:g}'} |"
        for name, gate in stage.gates.items()
    )
    content = (
        f"Checks every {format_duration(analysis.check_interval)}, hold {format_duration(analysis.hold)}, "
        f"rollback after {analysis.consecutive_failures} consecutive failures; a canary not fully "
        f"available for the progress deadline {format_duration(analysis.progress_deadline)} rolls back at once.\n\n"
        "| gate | direction | target | critical |\n|---|---|---|---|\n" + rows + "\n"
    )
    return (
        text.Panel()
        .id(panel_id)
        .title("Gates")
        .mode(text_model.TextMode.MARKDOWN)
        .content(content)
        .grid_pos(_grid(pos))
    )


def _grid(pos: tuple[int, int, int, int]) -> model.GridPos:
    x, y, w, h = pos
    return model.GridPos(x=x, y=y, w=w, h=h)


# --------------------------------------------------------------------------- variables, annotations


def variables(stage_order: list[str]) -> list[Any]:
    datasource = dash.DatasourceVariable("datasource").label("Data source").type("prometheus")
    app = (
        dash.QueryVariable("app")
        .label("Service")
        .datasource(DATASOURCE)
        .query(f"label_values({signal('requests_per_second').record}, app)")
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .current(model.VariableOption(selected=True, text="All", value="$__all"))
    )
    track = (
        dash.CustomVariable("track")
        .label("Track")
        .values("stable,canary")
        .multi(True)
        .include_all(True)
        .current(model.VariableOption(selected=True, text="All", value="$__all"))
    )
    stage_var = (
        dash.CustomVariable("stage")
        .label("Stage")
        .description("Shows the bot's stage changes into the selected stages as annotations.")
        .values(",".join(stage_order))
        .multi(True)
        .include_all(True)
        .current(model.VariableOption(selected=True, text="All", value="$__all"))
    )
    return [datasource, app, track, stage_var]


def annotation_queries() -> list[cogbuilder.Builder[model.AnnotationQuery]]:
    def by_tags(name: str, tags: list[str], color: str, match_any: bool = False) -> dash.AnnotationQuery:
        return (
            dash.AnnotationQuery()
            .name(name)
            .datasource(GRAFANA_DATASOURCE)
            .enable(True)
            .icon_color(color)
            # the SDK types target() as a data query; Grafana's tag filter is this AnnotationTarget
            .target(dash.AnnotationTarget().type("tags").tags(tags).match_any(match_any).limit(100))  # type: ignore[arg-type]
        )

    alerts = (
        dash.AnnotationQuery()
        .name("Firing alerts")
        .datasource(DATASOURCE)
        .enable(True)
        .icon_color("red")
        .expr('ALERTS{alertstate="firing", app=~"$app"}')
        .step("60s")
        .title_format("{{alertname}}")
        .text_format("{{severity}}: {{app}} {{track}}")
        .tag_keys("severity,app,track")
    )
    return [
        by_tags("Deployments", DEPLOYMENT_TAGS, "blue"),
        by_tags("Rollbacks", ROLLBACK_TAGS, "purple"),
        # the bot tags each change with its target stage; a multi-value $stage is expanded to
        # one tag per selected stage, and any of them matches
        by_tags("Stage changes ($stage)", ["$stage"], "green", match_any=True),
        alerts,
    ]


# --------------------------------------------------------------------------- dashboard


def dashboard_links(monitoring: MonitoringConfig) -> list[dash.DashboardLink]:
    """Links in the dashboard's header: the runbooks and where the reports are kept."""
    return [
        dash.DashboardLink(title).type(model.DashboardLinkType.LINK).url(url).target_blank(True).icon("doc")
        .tooltip(tooltip).keep_time(False).include_vars(False).as_dropdown(False).tags([])
        for title, url, tooltip in (
            ("Runbooks", monitoring.runbook_base_url, "What to do for each of the rollout's alerts"),
            ("Latest reports", monitoring.reports_url, "The bot's stage and incident reports"),
        )
    ]


def build_dashboard(stage: Stage, stage_order: list[str] | None = None,
                    monitoring: MonitoringConfig | None = None) -> dict[str, Any]:
    """The release dashboard for one stage as Grafana JSON (a plain dict)."""
    gates = stage.gates
    order = list(stage_order) if stage_order else [stage.name]
    monitoring = monitoring or MonitoringConfig()
    panels: list[Any] = [
        # top: what the bot sees and does, and what on-call can do about it
        dash.Row("Release bot").id(103).grid_pos(_grid((0, 0, 24, 1))),
        *bot_status_panels(stage, 1),
        verdict_timeline_panel(16, (0, 6, 12, 8)),
        decisions_panel(15, (12, 6, 6, 8)),
        check_duration_panel(23, stage, (18, 6, 6, 8)),
        act_panel(24, monitoring, (0, 14, 24, 5)),
        dash.Row("Release").id(100).grid_pos(_grid((0, 19, 24, 1))),
        canary_weight_panel(1, (0, 20, 8, 8)),
        canary_requests_panel(2, stage, (8, 20, 4, 8)),
        active_alerts_panel(3, (12, 20, 12, 8)),
        dash.Row("Gates: stable and canary side by side").id(101).grid_pos(_grid((0, 28, 24, 1))),
        gate_panel(4, "error_rate", gates.error_rate, (0, 29, 12, 8)),
        latency_panel(5, stage, (12, 29, 12, 8)),
        gate_panel(6, "test_pass_rate", gates.test_pass_rate, (0, 37, 12, 8)),
        gate_panel(7, "pipelex_success_rate", gates.pipelex_success_rate, (12, 37, 12, 8)),
        gate_panel(8, "fallback_rate", gates.fallback_rate, (0, 45, 12, 8)),
        gate_panel(9, "spice_tasks_per_minute", gates.spice_tasks_per_minute, (12, 45, 12, 8)),
        dash.Row("Traffic").id(102).grid_pos(_grid((0, 53, 24, 1))),
        request_rate_panel(10, (0, 54, 16, 8)),
        stage_panel(11, stage, (16, 54, 8, 8)),
        availability_panel(12, stage, (0, 62, 12, 8)),
        # the optional router gate's thresholds, else the app error-rate gate's (both a 5xx share)
        gate_panel(13, "router_error_rate", gates.router_error_rate or gates.error_rate, (12, 62, 12, 8)),
        dash.Row("Pods per version").id(104).grid_pos(_grid((0, 70, 24, 1))),
        *pod_panels(71),
        dash.Row("Judge").id(105).grid_pos(_grid((0, 79, 24, 1))),
        *judge_panels(80),
    ]
    builder = (
        dash.Dashboard(TITLE)
        .uid(UID)
        .description(
            "SPICE + Pipelex progressive rollout, thresholds from the stage gates. "
            "Generated by rollout.monitoring.dashboard; do not edit in Grafana."
        )
        .tags(TAGS)
        .readonly()  # generated: change rollout/monitoring/dashboard.py, not the dashboard in Grafana
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .refresh("1m")
        .time("now-6h", "now")
        .timezone("utc")
        .annotations(annotation_queries())
        .links(dashboard_links(monitoring))
    )
    for variable in variables(order):
        builder = builder.with_variable(variable)
    for panel in panels:
        if isinstance(panel, dash.Row):
            builder = builder.with_row(panel)
        else:
            builder = builder.with_panel(panel)
    return json.loads(JSONEncoder(sort_keys=True).encode(builder.build()))


def dashboard_json(dashboard: dict[str, Any]) -> str:
    """The text written to disk: stable key order and indentation so diffs stay small."""
    return json.dumps(dashboard, indent=2, sort_keys=True) + "\n"


def write_dashboards(config: StackConfig, out_dir: Path) -> list[Path]:
    """Write out_dir/grafana/<uid>.json for `rollout render`; returns the paths written."""
    target = Path(out_dir) / "grafana"
    target.mkdir(parents=True, exist_ok=True)
    dashboard = build_dashboard(config.stage, config.project.stage_order, config.project.monitoring)
    path = target / f"{dashboard['uid']}.json"
    path.write_text(dashboard_json(dashboard))
    return [path]


def committed_dashboard(project_dir: Path) -> dict[str, Any]:
    """What dashboards/genesis-release.json must hold: the dashboard of COMMITTED_STAGE."""
    from rollout.config import load_stack_config

    config = load_stack_config(Path(project_dir), COMMITTED_STAGE)
    return build_dashboard(config.stage, config.project.stage_order, config.project.monitoring)


def main() -> None:
    from rollout.config import REPO_ROOT as root

    out = root / "dashboards" / f"{UID}.json"
    out.write_text(dashboard_json(committed_dashboard(root)))
    print(f"wrote {out.relative_to(root)}")


if __name__ == "__main__":
    main()
