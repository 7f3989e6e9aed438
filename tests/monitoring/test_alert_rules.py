"""rollout.monitoring.alert_rules: rule files generated from the stage model, checked with the real promtool.

promtool 2.42 runs here: `check rules` on every rendered file, `test rules` on the committed unit
tests (alerts/tests/*.yaml) and on tests generated here for non-default models (drift checks).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from support.promtool import (
    ALERTS_DIR,
    REPO_ROOT,
    run_ok,
    stack_configs,
    write_promtool_test,
)

from rollout.analysis.signals import SIGNALS
from rollout.config import load_stack_config
from rollout.model import Analysis, ServiceConfig, StackConfig
from rollout.monitoring import alert_rules
from rollout.monitoring.alert_rules import (
    ALERT_GROUP,
    RECORDING_GROUP,
    RELEASE_BOT_ALERTS,
    RULES_FILE,
    alert_names,
    missing_runbooks,
    render_rule_file,
    rule_groups,
    runbook_url,
    stack_rule_groups,
    write_rules,
)

COMMITTED = ALERTS_DIR / RULES_FILE
UNIT_TESTS = sorted((ALERTS_DIR / "tests").glob("*.yaml"))
GROUP_ORDER = [RECORDING_GROUP, ALERT_GROUP]


def canary_config() -> StackConfig:
    return load_stack_config(REPO_ROOT, "canary")


def alerts_of(document: dict) -> list[dict]:
    return [r for g in document["groups"] for r in g["rules"] if "alert" in r]


def group(document: dict, name: str) -> dict:
    return next(g for g in document["groups"] if g["name"] == name)


def with_stage(config: StackConfig, **changes: object) -> StackConfig:
    return config.model_copy(update={"stage": config.stage.model_copy(update=changes)})


# --------------------------------------------------------------------------- committed file


def test_committed_rule_file_is_what_the_generator_renders_for_canary() -> None:
    assert COMMITTED.read_text() == render_rule_file(canary_config()), (
        "alerts/genesis-rollout.rules.yaml is stale: regenerate it with "
        "`uv run python -m rollout.monitoring.alert_rules canary`"
    )


def test_write_rules_writes_the_rendered_file_under_alerts(tmp_path: Path) -> None:
    config = canary_config()
    path = write_rules(config, tmp_path)
    assert path == tmp_path / "alerts" / RULES_FILE
    assert path.read_text() == render_rule_file(config)


# --------------------------------------------------------------------------- promtool


def test_promtool_checks_the_committed_file_and_every_stage(tmp_path: Path) -> None:
    files = [COMMITTED]
    for config in stack_configs():
        files.append(write_rules(config, tmp_path / config.stage.name))
    output = run_ok("promtool", "check", "rules", *files)
    assert output.count("SUCCESS") == len(files), output


def test_promtool_unit_tests_pass() -> None:
    assert UNIT_TESTS, "no promtool unit tests in alerts/tests"
    output = run_ok("promtool", "test", "rules", *UNIT_TESTS)
    assert output.count("SUCCESS") == len(UNIT_TESTS), output


def _unit_test_cases() -> tuple[list[dict], list[dict]]:
    alert_cases, expr_cases = [], []
    for path in UNIT_TESTS:
        document = yaml.safe_load(path.read_text())
        assert document["group_eval_order"] == GROUP_ORDER, f"{path.name}: group_eval_order"
        for test in document["tests"]:
            alert_cases += test.get("alert_rule_test", [])
            expr_cases += test.get("promql_expr_test", [])
    return alert_cases, expr_cases


def test_every_alert_has_unit_tests_that_show_it_firing_and_not_firing() -> None:
    alert_cases, _ = _unit_test_cases()
    for name in alert_names(yaml.safe_load(COMMITTED.read_text())):
        cases = [c for c in alert_cases if c["alertname"] == name]
        assert any(c["exp_alerts"] for c in cases), f"{name}: no unit test shows it firing"
        assert any(not c["exp_alerts"] for c in cases), f"{name}: no unit test shows it quiet"


def test_every_recording_rule_value_is_checked_by_a_unit_test() -> None:
    _, expr_cases = _unit_test_cases()
    checked = " ".join(c["expr"] for c in expr_cases if c.get("exp_samples"))
    for sig in SIGNALS:
        assert sig.record in checked, f"{sig.record}: no promql_expr_test checks its value"


def _firing_test(alert: str, at: str, firing: bool) -> dict:
    return {
        "expr": f'count(ALERTS{{alertname="{alert}", alertstate="firing"}})',
        "eval_time": at,
        "exp_samples": [{"labels": "{}", "value": 1}] if firing else [],
    }


@pytest.mark.parametrize(("critical", "fires"), [(0.01, True), (0.03, False)])
def test_changing_a_gate_changes_the_alert(tmp_path: Path, critical: float, fires: bool) -> None:
    """A steady 2% canary error rate against the error-rate gate's critical threshold."""
    config = canary_config()
    gates = config.stage.gates.model_copy(
        update={"error_rate": config.stage.gates.error_rate.model_copy(update={"critical": critical})}
    )
    document = rule_groups(with_stage(config, gates=gates).stage, config.project.monitoring, config.project.services)
    expr = next(r["expr"] for r in alerts_of(document) if r["alert"] == "GenesisErrorRateCritical")
    assert expr.endswith(f"> {critical!r}")

    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(document, sort_keys=False))
    series = '{namespace="genesis", app="genesis", track="canary", pod="c1"}'
    test = {
        "interval": "1m",
        "input_series": [
            {"series": f"genesis_request_duration_seconds_count{series}", "values": "0+600x40"},
            {"series": f"genesis_error_rate{series}", "values": "0.02x40"},
        ],
        "promql_expr_test": [_firing_test("GenesisErrorRateCritical", "30m", fires)],
    }
    unit = write_promtool_test(tmp_path / "drift.test.yaml", rules, [test], "5m", GROUP_ORDER)
    run_ok("promtool", "test", "rules", unit)


def test_alert_fires_on_the_nth_consecutive_bad_check_of_the_model(tmp_path: Path) -> None:
    """check_interval 1m and consecutive_failures 4: pending after 3 bad checks, firing on the 4th."""
    config = canary_config()
    analysis = Analysis(check_interval="1m", consecutive_failures=4, window="5m")
    document = rule_groups(
        with_stage(config, analysis=analysis).stage, config.project.monitoring, config.project.services
    )
    alerts = group(document, ALERT_GROUP)
    assert alerts["interval"] == "1m"
    # every gate alert; missing data and unavailability carry their own delays
    gate_alerts = [r for r in alerts["rules"] if "absent(" not in r["expr"]
                   and r["alert"] not in ("GenesisCanaryUnavailable", "GenesisReleaseBotSilent",
                                          "GenesisReleaseJudgeFailing")]
    assert {r["for"] for r in gate_alerts} == {"3m"}

    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(document, sort_keys=False))
    series = '{namespace="genesis", app="genesis", track="canary", pod="c1"}'
    name = "GenesisErrorRateCritical"
    test = {
        "interval": "1m",
        "input_series": [
            {"series": f"genesis_request_duration_seconds_count{series}", "values": "0+600x20"},
            # good until minute 5, bad from minute 6: checks 6, 7, 8, 9 are the 1st..4th bad ones
            {"series": f"genesis_error_rate{series}", "values": "0x5 0.02x15"},
        ],
        "promql_expr_test": [
            _firing_test(name, "8m", False),
            {
                "expr": f'count(ALERTS{{alertname="{name}", alertstate="pending"}})',
                "eval_time": "8m",
                "exp_samples": [{"labels": "{}", "value": 1}],
            },
            _firing_test(name, "9m", True),
        ],
    }
    unit = write_promtool_test(tmp_path / "nth.test.yaml", rules, [test], "1m", GROUP_ORDER)
    run_ok("promtool", "test", "rules", unit)


def test_missing_data_waits_for_a_rate_window_and_two_scrapes_after_a_start(tmp_path: Path) -> None:
    """Short checks (30s, 3 in a row -> for 1m) with 30s scrapes: a series appears only after two
    scrapes inside the 2m window, so missing data may not be called before 2m + 2 x 30s = 3m."""
    config = canary_config()
    analysis = Analysis(check_interval="30s", consecutive_failures=3, window="2m")
    document = rule_groups(
        with_stage(config, analysis=analysis).stage, config.project.monitoring, config.project.services
    )
    fors = {r["alert"]: r["for"] for r in alerts_of(document)}
    assert fors["GenesisCanaryDataMissing"] == fors["GenesisStableDataMissing"] == "3m"
    assert fors["GenesisErrorRateCritical"] == "1m"

    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(document, sort_keys=False))
    # new canary pods are first scraped 2m after the start (`_x3`: no samples at 0s..90s), so the
    # rate exists from 2m30s on: after the checks' 1m `for`, before the 3m warm-up floor
    series = '{namespace="genesis", app="genesis", track="canary", pod="c1"}'
    test = {
        "interval": "30s",
        "input_series": [
            {"series": f"genesis_request_duration_seconds_count{series}", "values": "_x3 0+300x20"},
        ],
        "promql_expr_test": [
            {  # nothing scraped yet for 3 checks: pending, not firing
                "expr": 'count(ALERTS{alertname="GenesisCanaryDataMissing", alertstate="pending"})',
                "eval_time": "90s",
                "exp_samples": [{"labels": "{}", "value": 1}],
            },
            _firing_test("GenesisCanaryDataMissing", "90s", False),
            {  # the data arrived: nothing pending or firing any more
                "expr": 'count(ALERTS{alertname="GenesisCanaryDataMissing"})',
                "eval_time": "5m",
                "exp_samples": [],
            },
        ],
    }
    unit = write_promtool_test(tmp_path / "warmup.test.yaml", rules, [test], "30s", GROUP_ORDER)
    run_ok("promtool", "test", "rules", unit)


# --------------------------------------------------------------------------- what the model selects


def test_recording_rules_use_the_rate_window_and_run_at_most_every_minute() -> None:
    config = canary_config()
    for analysis, interval, window in [
        (Analysis(check_interval="5m"), "1m", "[5m]"),
        (Analysis(check_interval="30s", window="2m"), "30s", "[2m]"),
    ]:
        document = rule_groups(
            with_stage(config, analysis=analysis).stage, config.project.monitoring, config.project.services
        )
        recording = group(document, RECORDING_GROUP)
        assert recording["interval"] == interval
        assert [r["record"] for r in recording["rules"]] == [s.record for s in SIGNALS]
        windowed = [r["expr"] for r in recording["rules"] if "rate(" in r["expr"]]
        assert windowed and all(window in expr for expr in windowed)


def test_stage_weight_and_flags_decide_which_alerts_are_rendered() -> None:
    names = {c.stage.name: set(alert_names(alert_rules.stack_rule_groups(c))) for c in stack_configs()}
    # and at every stage: a locked stack blocks promotions and rollbacks alike
    triggers = {"GenesisErrorRateCritical", "GenesisP95LatencyCritical", "GenesisTestPassRateCritical", "GenesisStackLocked"}
    canary_only = {
        "GenesisSpiceTaskRateLow",
        "GenesisPipelexSuccessLow",
        "GenesisPipelexSuccessCritical",
        "GenesisFallbackRateHigh",
        "GenesisFallbackRateCritical",
        "GenesisCanaryDataMissing",
        "GenesisCanaryUnavailable",
        "GenesisReleaseBotSilent",
        "GenesisReleaseJudgeFailing",
    }
    # stable (0%): no canary traffic, so no canary alerts; stable data is expected
    assert names["stable"] == triggers | {"GenesisStableDataMissing"}
    for stage in ("canary", "gradual", "majority"):
        assert names[stage] == triggers | canary_only | {"GenesisStableDataMissing"}, stage
    # full (100%): stable serves nothing, so its data is not expected
    assert names["full"] == triggers | canary_only

    canary = canary_config()
    flags = dict(canary.stage.flags.values)
    for flag in ("pipelex-workflows", "pipelex-runtime", "pipelex-workflow-templates",
                 "pipelex-parallel-steps", "pipelex-htdag-fallback"):
        flags[flag] = False
    no_pipelex = with_stage(canary, flags=canary.stage.flags.model_copy(update={"values": flags}))
    rendered = set(alert_names(alert_rules.stack_rule_groups(no_pipelex)))
    assert not {n for n in rendered if "Pipelex" in n or "Fallback" in n}
    assert "GenesisSpiceTaskRateLow" in rendered


def test_subsystem_alerts_watch_stable_when_a_completed_release_keeps_the_flags_on_at_weight_0() -> None:
    canary = canary_config()
    settled = with_stage(canary, stage=canary.stage.stage.model_copy(update={"name": "stable", "weight": 0}))
    rules = alerts_of(alert_rules.stack_rule_groups(settled))
    subsystem = [r for r in rules if any(k in r["alert"] for k in ("Spice", "Pipelex", "Fallback"))]
    assert len(subsystem) == 5
    assert all('{track="stable"}' in r["expr"] for r in subsystem)
    assert "GenesisCanaryDataMissing" not in {r["alert"] for r in rules}


def test_missing_data_alerts_name_each_service() -> None:
    config = canary_config()
    extra = ServiceConfig(
        name="planner", namespace="agents",
        stable={"image": "ghcr.io/genesis/planner:2.0.0", "version": "2.0.0"},
        canary={"image": "ghcr.io/genesis/planner:2.1.0", "version": "2.1.0"},
    )
    services = [*config.project.services, extra]
    rules = alerts_of(rule_groups(config.stage, config.project.monitoring, services))
    missing = {r["expr"] for r in rules if r["alert"] == "GenesisCanaryDataMissing"}
    assert missing == {
        'absent(namespace_app_track:genesis_requests:rate{namespace="genesis", app="genesis", track="canary"})',
        'absent(namespace_app_track:genesis_requests:rate{namespace="agents", app="planner", track="canary"})',
    }
    stable = [r for r in rules if r["alert"] == "GenesisStableDataMissing"]
    assert {r["annotations"]["summary"] for r in stable} == {
        "No stable request data for genesis/genesis", "No stable request data for agents/planner"
    }


def test_promotion_between_live_stages_does_not_rewrite_the_rules() -> None:
    """Same gates and flags: the rule file of canary and gradual is the same, apart from its header,
    so `rollout plan` shows only weights, replicas and flags changing."""
    canary, gradual = (load_stack_config(REPO_ROOT, s) for s in ("canary", "gradual"))
    assert stack_rule_groups(canary) == stack_rule_groups(gradual)


# --------------------------------------------------------------------------- conventions, runbooks


def test_alerts_follow_the_conventions() -> None:
    for config in stack_configs():
        monitoring = config.project.monitoring
        for rule in alerts_of(alert_rules.stack_rule_groups(config)):
            name = rule["alert"]
            assert re.fullmatch(r"(?:[A-Z][a-z0-9]+)+", name), f"{name}: not CamelCase"
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
            assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}, name
            assert rule["annotations"]["runbook_url"] == runbook_url(monitoring, name)
            assert rule["annotations"]["runbook_url"].endswith(f"/alerts/runbooks/{name}.md")
            if "absent(" not in rule["expr"]:
                assert "$value" in rule["annotations"]["description"], name


def test_every_alert_and_release_bot_alert_has_a_runbook() -> None:
    names = set(RELEASE_BOT_ALERTS)
    for config in stack_configs():
        names |= set(alert_names(alert_rules.stack_rule_groups(config)))
    assert missing_runbooks(sorted(names)) == []
    for name in names:
        text = (ALERTS_DIR / "runbooks" / f"{name}.md").read_text()
        assert text.startswith(f"# {name}\n"), name
        for heading in ("## What it means", "## Check", "## What the release bot does", "## What to do"):
            assert heading in text, f"{name}.md lacks '{heading}'"


@pytest.mark.parametrize(("share_5xx", "fires"), [(0.05, True), (0.002, False)])
def test_the_optional_router_gate_renders_an_alert_that_fires_past_its_critical(tmp_path: Path, share_5xx: float, fires: bool) -> None:
    """Only a stage that sets gates.routerErrorRate gets the alert; Istio series from the calling proxy."""
    from rollout.model import MaxRatioGate

    config = canary_config()
    assert "GenesisRouterErrorRateCritical" not in alert_names(rule_groups(config.stage, config.project.monitoring, config.project.services))
    gates = config.stage.gates.model_copy(update={"router_error_rate": MaxRatioGate(target=0.001, critical=0.01)})
    document = rule_groups(with_stage(config, gates=gates).stage, config.project.monitoring, config.project.services)
    assert "GenesisRouterErrorRateCritical" in alert_names(document)
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(document, sort_keys=False))
    errors = round(600 * share_5xx)
    series = 'reporter="source", destination_workload="genesis-canary", destination_workload_namespace="genesis"'
    test = {
        "interval": "1m",
        "input_series": [
            {"series": f'istio_requests_total{{{series}, response_code="200"}}', "values": f"0+{600 - errors}x40"},
            {"series": f'istio_requests_total{{{series}, response_code="503"}}', "values": f"0+{errors}x40"},
        ],
        "promql_expr_test": [_firing_test("GenesisRouterErrorRateCritical", "30m", fires)],
    }
    unit = write_promtool_test(tmp_path / "router.test.yaml", rules, [test], "5m", GROUP_ORDER)
    run_ok("promtool", "test", "rules", unit)
