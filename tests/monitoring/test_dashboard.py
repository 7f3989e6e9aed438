"""The release dashboard: committed JSON is current, valid against Grafana's own schema, every
PromQL expression parses in the real promtool, and thresholds come from the stage's gates.

No Grafana server runs here; the dashboard is validated offline against a JSON schema generated
from @grafana/schema (Grafana's published dashboard types, schemaVersion 42).
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import jsonschema
import pytest
from support.monitoring import ROOT, grafana_dashboard_schema, promtool_check_exprs

from rollout.analysis import signals
from rollout.config import load_release, load_stack_config
from rollout.model import Gates, MaxGate, MinRatioGate, Stage
from rollout.monitoring.dashboard import (
    COMMITTED_STAGE,
    DEPLOYMENT_TAGS,
    ROLLBACK_TAGS,
    UID,
    build_dashboard,
    dashboard_json,
    write_dashboards,
)
from rollout.monitoring.names import (
    APPROVAL_METRIC,
    CHECK_DURATION_METRIC,
    CHECK_VERDICT_METRIC,
    DECISION_METRIC,
    GATE_VERDICT_METRIC,
    JUDGE_EVIDENCE_METRIC,
    JUDGE_RATIO_METRIC,
    JUDGE_THRESHOLD_METRIC,
    LAST_CHECK_METRIC,
    NEXT_PROMOTION_METRIC,
    PAUSED_METRIC,
    STAGE_INFO_METRIC,
    WEIGHT_METRIC,
)

COMMITTED = ROOT / "dashboards" / f"{UID}.json"
# concrete values for the Grafana variables, so promtool sees plain PromQL
VARIABLES = {"$app": "genesis", "$track": "stable|canary", "$stage": "canary"}


@pytest.fixture(scope="module")
def release():
    return load_release(ROOT)


@pytest.fixture(scope="module")
def dashboard(release) -> dict[str, Any]:
    return build_dashboard(release.stage(COMMITTED_STAGE), release.project.stage_order)


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return grafana_dashboard_schema()


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def panel_by_title(dashboard: dict[str, Any], title: str) -> dict[str, Any]:
    matches = [p for p in panels(dashboard) if p["title"] == title]
    assert len(matches) == 1, f"expected one panel titled {title!r}"
    return matches[0]


def all_exprs(dashboard: dict[str, Any]) -> dict[str, str]:
    exprs = {}
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            exprs[f"panel_{panel['id']}_{target['refId']}"] = target["expr"]
    for i, annotation in enumerate(dashboard["annotations"]["list"]):
        if "expr" in annotation:
            exprs[f"annotation_{i}"] = annotation["expr"]
    return exprs


def substitute(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unsubstituted Grafana variable left in {expr!r}"
    return expr


def threshold_values(panel: dict[str, Any]) -> list[float | None]:
    return [step["value"] for step in panel["fieldConfig"]["defaults"]["thresholds"]["steps"]]


# --------------------------------------------------------------------------- committed JSON


def test_committed_json_equals_builder_output(dashboard):
    assert COMMITTED.exists(), f"{COMMITTED} missing: run `uv run python -m rollout.monitoring.dashboard`"
    assert COMMITTED.read_text() == dashboard_json(dashboard), (
        "dashboards/genesis-release.json is stale: run `uv run python -m rollout.monitoring.dashboard`"
    )


def test_write_dashboards_writes_grafana_uid_json(tmp_path):
    config = load_stack_config(ROOT, "gradual")
    written = write_dashboards(config, tmp_path)
    assert written == [tmp_path / "grafana" / f"{UID}.json"]
    on_disk = json.loads(written[0].read_text())
    assert on_disk == build_dashboard(config.stage, config.project.stage_order)


# --------------------------------------------------------------------------- schema


def test_dashboard_validates_against_grafana_schema(dashboard, schema):
    assert dashboard["schemaVersion"] == 42
    jsonschema.Draft7Validator.check_schema(schema)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in jsonschema.Draft7Validator(schema).iter_errors(dashboard)]
    assert errors == []


def test_schema_rejects_a_misspelled_panel_key_and_wrong_schema_version(dashboard, schema):
    """The schema is strict enough to matter: typos and other Grafana versions fail."""
    broken = copy.deepcopy(dashboard)
    broken["panels"][1]["gridPoss"] = broken["panels"][1].pop("gridPos")
    assert not jsonschema.Draft7Validator(schema).is_valid(broken)
    older = dict(dashboard, schemaVersion=39)
    assert not jsonschema.Draft7Validator(schema).is_valid(older)


# --------------------------------------------------------------------------- PromQL


def test_every_expression_parses_in_promtool(dashboard, tmp_path):
    exprs = {name: substitute(expr) for name, expr in all_exprs(dashboard).items()}
    assert len(exprs) >= 12
    result = promtool_check_exprs(exprs, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout


def test_promtool_check_catches_a_broken_expression(tmp_path):
    result = promtool_check_exprs({"broken": 'sum by (app (up{app="x"})'}, tmp_path)
    assert result.returncode != 0


BOT_METRICS = {LAST_CHECK_METRIC, DECISION_METRIC, GATE_VERDICT_METRIC, JUDGE_EVIDENCE_METRIC, JUDGE_THRESHOLD_METRIC,
               JUDGE_RATIO_METRIC, STAGE_INFO_METRIC, WEIGHT_METRIC, CHECK_VERDICT_METRIC, CHECK_DURATION_METRIC,
               PAUSED_METRIC, APPROVAL_METRIC, NEXT_PROMOTION_METRIC}  # the bot's own, not per app and track
# per-version pod panels: kube-state-metrics and cAdvisor, joined to our targets' `up` for the version
POD_METRICS = {"up", "kube_pod_container_status_restarts_total", "container_cpu_usage_seconds_total",
               "container_memory_working_set_bytes"}
# the latency quantiles no gate judges are recorded (alerts, reports) but not plotted
UNPLOTTED = {signals.signal("p50_latency_seconds").record, signals.signal("p99_latency_seconds").record}


def test_panels_query_the_shared_recording_rules_by_app_and_track(dashboard):
    records = {s.record for s in signals.SIGNALS}
    used = set()
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*(?=\{)", target["expr"]))
            assert names, f"panel {panel['title']!r} selects no metric"
            assert names <= records | {"ALERTS"} | BOT_METRICS | POD_METRICS, names
            if (names & records or names & POD_METRICS) and "track=\"canary\"" not in target["expr"]:
                assert 'app=~"$app", track=~"$track"' in target["expr"], target["expr"]
            used |= names & records
    assert used == records - UNPLOTTED, f"signals not on the dashboard: {records - UNPLOTTED - used}"


# --------------------------------------------------------------------------- content


def test_panel_ids_are_fixed_and_unique(dashboard):
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert sorted(p["id"] for p in panels(dashboard)) == list(range(1, 28))
    assert len(panels(dashboard)) >= 10


@pytest.mark.parametrize("stage_name", ["canary", "gradual", "majority", "full"])
def test_gate_threshold_lines_come_from_the_stage_gates(release, stage_name):
    stage = release.stage(stage_name)
    board = build_dashboard(stage, release.project.stage_order)
    for key, title in [
        ("error_rate", "Error rate"),
        ("test_pass_rate", "Test pass rate"),
        ("pipelex_success_rate", "Pipelex workflow success"),
        ("fallback_rate", "Fallback rate"),
        ("spice_tasks_per_minute", "SPICE tasks per minute"),
        ("p95_latency_seconds", "Latency P95"),
    ]:
        gate = getattr(stage.gates, key)
        panel = panel_by_title(board, title)
        values = [v for v in threshold_values(panel) if v is not None]
        expected = sorted(v for v in (gate.target, gate.critical) if v is not None)
        assert sorted(values) == expected, (stage_name, key)
        assert panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] == "dashed"


def test_changed_gates_move_the_lines_and_colors_follow_direction(release):
    base = release.stage("canary")
    gates = Gates(
        p95_latency_seconds=MaxGate(target=0.3, critical=0.9),
        test_pass_rate=MinRatioGate(target=0.9, critical=0.8),
    )
    stage = Stage.model_validate(base.model_dump(by_alias=True) | {"gates": gates.model_dump(by_alias=True)})
    board = build_dashboard(stage, release.project.stage_order)
    latency = panel_by_title(board, "Latency P95")["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [(s["value"], s["color"]) for s in latency] == [(None, "green"), (0.3, "yellow"), (0.9, "red")]
    passing = panel_by_title(board, "Test pass rate")["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [(s["value"], s["color"]) for s in passing] == [(None, "red"), (0.8, "yellow"), (0.9, "green")]


def test_the_measured_canary_share_and_minimum_requests(release):
    for name in ("canary", "majority"):
        stage = release.stage(name)
        board = build_dashboard(stage, release.project.stage_order)
        weight = panel_by_title(board, "Canary traffic share (measured)")
        expr = weight["targets"][0]["expr"]
        assert expr.startswith("100 * ") and 'track="canary"' in expr
        assert signals.signal("requests_per_second").record in expr
        window = int(stage.analysis.rate_window.total_seconds())
        requests = next(p for p in panels(board) if p["title"].startswith("Canary requests per"))
        assert requests["targets"][0]["expr"].endswith(f"* {window}")
        assert threshold_values(requests)[1] == stage.analysis.min_canary_requests


def test_promotion_does_not_change_the_dashboard(release):
    """Stages with the same gates give the same dashboard: promotion only moves the weight."""
    boards = {build_dashboard(s, release.project.stage_order).__repr__() for s in release.stages[1:]}
    assert len(boards) == 1


def test_variables_annotations_and_track_colors(dashboard, release):
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert set(variables) == {"datasource", "app", "track", "stage"}
    assert variables["track"]["query"] == "stable,canary"
    assert variables["stage"]["query"] == ",".join(release.project.stage_order)
    assert variables["app"]["query"].startswith(f"label_values({signals.signal('requests_per_second').record}")

    annotations = {a["name"]: a for a in dashboard["annotations"]["list"]}
    assert annotations["Deployments"]["target"]["tags"] == DEPLOYMENT_TAGS
    assert annotations["Stage changes ($stage)"]["target"] | {"tags": None} == {
        "type": "tags", "tags": None, "matchAny": True, "limit": 100
    } and annotations["Stage changes ($stage)"]["target"]["tags"] == ["$stage"]
    assert annotations["Firing alerts"]["expr"].startswith('ALERTS{alertstate="firing"')

    error_panel = panel_by_title(dashboard, "Error rate")
    colors = {o["matcher"]["options"]: o["properties"][0]["value"]["fixedColor"]
              for o in error_panel["fieldConfig"]["overrides"]}
    assert colors == {".* stable$": "green", ".* canary$": "orange"}
    assert error_panel["targets"][0]["legendFormat"] == "{{app}} {{track}}"


def test_annotation_filters_match_what_the_bot_posts():
    """The bot's own tags (rollout.release.notify) must satisfy the dashboard's all-tags-must-match filters."""
    from rollout.release.notify import annotation_tags

    rollback, promote = set(annotation_tags("rollback", "stable")), set(annotation_tags("promote", "gradual"))
    assert set(DEPLOYMENT_TAGS) <= rollback and set(DEPLOYMENT_TAGS) <= promote
    assert set(ROLLBACK_TAGS) <= rollback and not set(ROLLBACK_TAGS) <= promote
    assert "gradual" in promote  # what the $stage annotation matches


def test_stage_panel_lists_every_gate(dashboard, release):
    content = panel_by_title(dashboard, "Gates")["options"]["content"]
    for name, _ in release.stage(COMMITTED_STAGE).gates.items():
        assert f"| {name} |" in content
    assert "progress deadline 10m" in content


def rows(dashboard: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """(row title, its panels) in dashboard order: a row holds the panels up to the next row."""
    out: list[tuple[str, list[dict[str, Any]]]] = []
    for panel in sorted(dashboard["panels"], key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"])):
        if panel["type"] == "row":
            out.append((panel["title"], []))
        else:
            out[-1][1].append(panel)
    return out


def test_the_bot_row_reads_the_metrics_the_bot_publishes(dashboard):
    """The names the panels query are the bot's own (rollout.release.metrics registers them)."""
    from rollout.release.metrics import BotMetrics

    published = {m.name for m in BotMetrics("prod").registry.collect()}
    bot = [p for p in panels(dashboard) if any(name in t["expr"] for t in p.get("targets", []) for name in BOT_METRICS)]
    queried = {name for p in bot for target in p["targets"] for name in BOT_METRICS if name in target["expr"]}
    assert queried == BOT_METRICS and BOT_METRICS <= published
    assert all('rollout="genesis-rollout"' in target["expr"] for p in bot for target in p["targets"]
               if any(name in target["expr"] for name in BOT_METRICS))


def test_the_top_row_shows_the_bot_stage_weight_verdicts_controls_and_what_to_do(dashboard):
    (title, top), *_ = rows(dashboard)
    assert title == "Release bot" and dashboard["panels"][0]["gridPos"]["y"] == 0
    by_title = {p["title"]: p for p in top}
    assert {"Stage", "Canary weight: planned / measured", "Paused / approval", "Time to the next promotion",
            "Check verdicts", "Check duration", "Act: rollback, runbooks, reports"} <= set(by_title)

    def exprs(title: str) -> list[str]:
        return [t["expr"] for t in by_title[title]["targets"]]

    assert STAGE_INFO_METRIC in exprs("Stage")[0] and by_title["Stage"]["options"]["textMode"] == "name"
    planned, measured = exprs("Canary weight: planned / measured")
    assert WEIGHT_METRIC in planned and measured.startswith("100 * sum(") and 'track="canary"' in measured
    assert [t["legendFormat"] for t in by_title["Canary weight: planned / measured"]["targets"]] == ["planned", "measured"]
    assert PAUSED_METRIC in exprs("Paused / approval")[0] and APPROVAL_METRIC in exprs("Paused / approval")[1]
    assert NEXT_PROMOTION_METRIC in exprs("Time to the next promotion")[0]
    assert CHECK_DURATION_METRIC in exprs("Check duration")[0]
    assert by_title["Check duration"]["fieldConfig"]["defaults"]["unit"] == "s"


def test_the_verdict_timeline_shows_words_in_colours(dashboard):
    """A state timeline of the check's and each gate's verdict: 0/1/2 mapped to pass/hold/fail in
    green/yellow/red (the values rollout.release.metrics publishes)."""
    from rollout.release.metrics import VERDICT_VALUE

    timeline = panel_by_title(dashboard, "Check verdicts")
    assert timeline["type"] == "state-timeline"
    assert [re.findall(r"(\w+)\{", t["expr"]) for t in timeline["targets"]] == [[CHECK_VERDICT_METRIC], [GATE_VERDICT_METRIC]]
    (mapping,) = timeline["fieldConfig"]["defaults"]["mappings"]
    assert mapping["type"] == "value"
    shown = {value: (m["text"], m["color"]) for value, m in mapping["options"].items()}
    assert shown == {str(VERDICT_VALUE["pass"]): ("pass", "green"), str(VERDICT_VALUE["hold"]): ("hold", "yellow"),
                     str(VERDICT_VALUE["fail"]): ("fail", "red")}
    approval = panel_by_title(dashboard, "Paused / approval")["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert {v["text"] for v in approval.values()} == {"not needed", "needed", "given"}


def test_links_to_the_runbooks_the_latest_reports_and_the_rollback_command(release):
    """The links follow the monitoring config, and every runbook linked exists in alerts/runbooks/."""
    monitoring = release.project.monitoring.model_copy(update={
        "runbook_base_url": "https://example.test/runbooks", "reports_url": "https://example.test/reports"})
    board = build_dashboard(release.stage(COMMITTED_STAGE), release.project.stage_order, monitoring)
    assert [(link["title"], link["url"]) for link in board["links"]] == [
        ("Runbooks", "https://example.test/runbooks"), ("Latest reports", "https://example.test/reports")]
    content = panel_by_title(board, "Act: rollback, runbooks, reports")["options"]["content"]
    assert '`rollout rollback --reason "<why>"`' in content and "rollout plan <stage> stable" in content
    linked = re.findall(r"https://example\.test/runbooks/(\w+)\.md", content)
    assert "GenesisRolloutRolledBack" in linked
    assert all((ROOT / "alerts" / "runbooks" / f"{name}.md").is_file() for name in linked), linked
    assert "https://example.test/reports" in content


def test_the_latency_panel_has_one_stable_and_one_canary_line_per_judged_quantile(dashboard, release):
    latency = panel_by_title(dashboard, "Latency P95")
    assert [t["expr"] for t in latency["targets"]] == [
        f'{signals.signal("p95_latency_seconds").record}{{app=~"$app", track=~"$track"}}']
    assert latency["targets"][0]["legendFormat"] == "{{app}} {{track}} p95"  # per app: a stable and a canary line


def test_pods_per_version_panels_join_kube_state_metrics_and_cadvisor_to_the_version(dashboard):
    (pods,) = [row for title, row in rows(dashboard) if title == "Pods per version"]
    assert [p["title"] for p in pods] == ["Pod restarts per version (1h)", "CPU per version", "Memory per version"]
    for panel in pods:
        (target,) = panel["targets"]
        assert target["expr"].startswith("sum by (app, track, version) (")
        assert "group_left (app, track, version)" in target["expr"] and target["legendFormat"].endswith("{{version}}")


def test_the_per_version_queries_compute_what_they_say_in_prometheus(dashboard, tmp_path):
    """The real PromQL engine (promtool test rules) on series shaped like cAdvisor's,
    kube-state-metrics' and our targets' `up`: the join names each pod's version and sums per version."""
    import yaml
    from support.promtool import run

    pods = {p["title"]: substitute(p["targets"][0]["expr"]) for title, row in rows(dashboard)
            if title == "Pods per version" for p in row}
    records = {"restarts": pods["Pod restarts per version (1h)"], "cpu": pods["CPU per version"],
               "memory": pods["Memory per version"]}
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(
        {"groups": [{"name": "pods", "rules": [{"record": f"test:{k}", "expr": v} for k, v in records.items()]}]}))
    pod = {"stable": ("genesis-stable-abc", "1.41.0"), "canary": ("genesis-canary-def", "1.42.0")}

    def series(name: str, of: str, values: str, **extra: str) -> dict[str, str]:
        labels = {"namespace": "genesis", "pod": pod[of][0], **extra}
        return {"series": name + "{" + ", ".join(f'{k}="{v}"' for k, v in labels.items()) + "}", "values": values}

    inputs = []
    for track, (_, version) in pod.items():
        inputs.append(series("up", track, "1x120", app="genesis", track=track, version=version, job="genesis"))
        inputs.append(series("kube_pod_container_status_restarts_total", track,
                             "0+1x120" if track == "canary" else "0x120", container="genesis", job="ksm"))
        inputs.append(series("container_cpu_usage_seconds_total", track, "0+30x120" if track == "canary" else "0+15x120",
                             container="genesis", job="kubelet"))
        inputs.append(series("container_cpu_usage_seconds_total", track, "0+600x120", container="", job="kubelet"))
        inputs.append(series("container_memory_working_set_bytes", track,
                             "300000000x120" if track == "canary" else "200000000x120", container="genesis", job="kubelet"))
    expected = {
        "restarts": {"stable": 0, "canary": 60},  # one restart a minute over the last hour
        "cpu": {"stable": 0.25, "canary": 0.5},  # 15 s and 30 s of CPU a minute (the pod cgroup, container="", is left out)
        "memory": {"stable": 200000000, "canary": 300000000},
    }
    test = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": inputs,
        "promql_expr_test": [{
            "expr": f"round(test:{name} * 1000)", "eval_time": "120m",
            "exp_samples": [{"labels": f'{{app="genesis", track="{t}", version="{pod[t][1]}"}}',
                             "value": round(v * 1000)} for t, v in values.items()],
        } for name, values in expected.items()],
    }]}
    (tmp_path / "test.yml").write_text(yaml.safe_dump(test))
    result = run("promtool", "test", "rules", "test.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_readme_describes_every_panel_the_dashboard_has(dashboard):
    """dashboards/README.md names every row and panel title the JSON holds, and no other."""
    readme = (ROOT / "dashboards" / "README.md").read_text()
    described = [" ".join(t.split()) for t in re.findall(r"\*\*([^*]+)\*\*", readme.split("## What it shows")[1].split("\n## ")[0])]
    titles = [p["title"] for p in dashboard["panels"]]
    assert sorted(set(described)) == sorted(set(titles)), (set(described) ^ set(titles))
