"""rollout.config: Pulumi.yaml + stage file merging like the CLI, and errors naming file, key, rule."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from support.stack import REPO_ROOT, copy_project, edit_stage_file

from rollout.config import (
    ConfigError,
    load_release,
    load_stack_config,
    merge_config,
    project_defaults,
    stack_values,
)
from rollout.model import STAGE_ORDER


def test_merge_replaces_a_key_whole_like_the_cli():
    defaults = {"routing": {"router": "gateway-api", "hostnames": ["a"]}, "services": [1]}
    merged = merge_config(defaults, {"routing": {"router": "istio"}})
    assert merged == {"routing": {"router": "istio"}, "services": [1]}  # no deep merge


def test_project_defaults_unwrap_value_entries():
    defaults = project_defaults(REPO_ROOT)
    assert defaults["stageOrder"] == list(STAGE_ORDER)
    assert defaults["services"][0]["name"] == "genesis"


@pytest.mark.parametrize("stage", STAGE_ORDER)
def test_every_repository_stage_loads(stage):
    config = load_stack_config(REPO_ROOT, stage)
    assert config.stage.name == stage
    assert config.project.services[0].replicas == 10


def test_the_release_plan_is_progressive():
    release = load_release(REPO_ROOT)
    assert [s.weight for s in release.stages] == [0, 10, 50, 80, 100]
    assert release.rollback_target.name == "stable"


def test_a_stage_file_for_another_stage_is_refused(tmp_path):
    project = copy_project(tmp_path)
    edit_stage_file(project, "gradual", "stage", {"name": "canary", "weight": 50})
    with pytest.raises(ConfigError) as caught:
        load_stack_config(project, "gradual")
    assert caught.value.source == "Pulumi.gradual.yaml"
    assert "genesis-rollout:stage.name: is 'canary' but the file is for 'gradual'" in caught.value.problems[0]


def test_a_key_of_another_project_is_refused(tmp_path):
    project = copy_project(tmp_path)
    path = project / "Pulumi.canary.yaml"
    data = yaml.safe_load(path.read_text())
    data["config"]["other-project:stage"] = {"name": "canary", "weight": 10}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="other-project:stage: belongs to 'other-project'"):
        stack_values(path, "genesis-rollout")


def test_weight_over_100_names_file_key_and_rule(tmp_path):
    project = copy_project(tmp_path)
    edit_stage_file(project, "canary", "stage", {"name": "canary", "weight": 150})
    with pytest.raises(ConfigError) as caught:
        load_stack_config(project, "canary")
    assert str(caught.value).startswith("Pulumi.canary.yaml: invalid configuration")
    assert caught.value.problems == [
        "genesis-rollout:stage.weight: Input should be less than or equal to 100 (got 150)"
    ]


def test_decreasing_weights_name_every_stage_file(tmp_path):
    project = copy_project(tmp_path)
    edit_stage_file(project, "gradual", "stage", {"name": "gradual", "weight": 5})
    with pytest.raises(ConfigError) as caught:
        load_release(project)
    assert caught.value.source.startswith("stage files Pulumi.stable.yaml, Pulumi.canary.yaml")
    assert "'gradual' (5) comes after 'canary' (10)" in caught.value.problems[0]


def test_a_project_setting_error_names_pulumi_yaml(tmp_path):
    project = copy_project(tmp_path)
    path = project / "Pulumi.yaml"
    path.write_text(path.read_text().replace("replicas: 10", "replicas: -3"))
    with pytest.raises(ConfigError) as caught:
        load_stack_config(project, "canary")
    assert caught.value.source == "Pulumi.yaml"
    assert caught.value.problems == [
        "genesis-rollout:services[0].replicas: Input should be greater than or equal to 1 (got -3)"
    ]


def test_top_level_that_is_not_a_mapping_is_refused(tmp_path):
    project = copy_project(tmp_path)
    (project / "Pulumi.canary.yaml").write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="Pulumi.canary.yaml: invalid configuration\n  - top level must be a mapping"):
        load_stack_config(project, "canary")


def _set_release_flags(project, flags) -> None:  # noqa: ANN001
    path = project / "Pulumi.yaml"
    data = yaml.safe_load(path.read_text())
    data["config"]["genesis-rollout:releaseFlags"] = {"value": flags}
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_the_rollback_target_must_switch_the_release_flags_off(tmp_path):
    project = copy_project(tmp_path)
    full_flags = load_stack_config(project, "full").stage.flags.values
    edit_stage_file(project, "stable", "flags", full_flags)
    with pytest.raises(ConfigError) as caught:
        load_stack_config(project, "stable")
    assert caught.value.source == "Pulumi.stable.yaml"
    assert any(
        p.startswith("genesis-rollout:flags:") and "rollback target" in p and "spice-task-generation" in p
        for p in caught.value.problems
    ), caught.value.problems


def test_a_completed_release_makes_its_flags_the_baseline(tmp_path):
    """After `full`, releaseFlags: [] lets the stable stage keep SPICE and Pipelex on."""
    project = copy_project(tmp_path)
    full_flags = load_stack_config(project, "full").stage.flags.values
    edit_stage_file(project, "stable", "flags", full_flags)
    _set_release_flags(project, [])
    stable = load_stack_config(project, "stable").stage
    assert stable.flags.enabled("spice-task-generation") and not stable.flags.enabled("fallback-mode")
    assert load_release(project).rollback_target.name == "stable"


def test_an_unknown_release_flag_is_refused(tmp_path):
    project = copy_project(tmp_path)
    _set_release_flags(project, ["spice-task-generaton"])
    with pytest.raises(ConfigError) as caught:
        load_stack_config(project, "canary")
    assert caught.value.source == "Pulumi.yaml"
    assert any("genesis-rollout:releaseFlags" in p and "unknown flag" in p for p in caught.value.problems)


def test_the_loader_refuses_a_service_name_used_twice_like_the_program(tmp_path):
    """The rule lives in the model, so render, plan and the bot refuse it too, not only `pulumi up`."""
    project = copy_project(tmp_path)
    path = project / "Pulumi.yaml"
    data = yaml.safe_load(path.read_text())
    services = data["config"]["genesis-rollout:services"]["value"]
    services.append({**services[0], "namespace": "other"})
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ConfigError) as caught:
        load_stack_config(project, "canary")
    assert caught.value.source == "Pulumi.yaml"
    assert caught.value.problems == [
        "genesis-rollout:services[1].name: 'genesis' is already used by services[0]; service names must be unique"
    ]


def test_replica_ratio_refuses_a_stage_it_cannot_meet_and_names_the_replicas_it_needs(tmp_path):
    """4 replicas: one canary pod of four is 25%, 15 points off the canary stage's 10%."""
    project = copy_project(tmp_path)
    path = project / "Pulumi.yaml"
    data = yaml.safe_load(path.read_text())
    data["config"]["genesis-rollout:routing"]["value"]["router"] = "replica-ratio"
    data["config"]["genesis-rollout:services"]["value"][0]["replicas"] = 4
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ConfigError) as caught:
        load_stack_config(project, "canary")
    assert caught.value.source == "Pulumi.canary.yaml"
    assert caught.value.problems == [
        "genesis-rollout:stage.weight: stage 'canary' (10%) cannot be met by router replica-ratio: "
        "services[0] 'genesis' has 4 replicas, so the canary would get 25% of the traffic, more than "
        "5 points off; it needs at least 7 replicas"
    ]
    assert load_stack_config(project, "gradual").stage.weight == 50  # 2 of 4 is exactly 50%
    with pytest.raises(ConfigError, match="stage 'canary'"):
        load_release(project)


def test_gateway_api_takes_any_replica_count():
    from rollout.model import ProjectSettings, StackConfig, Stage

    config = load_stack_config(REPO_ROOT, "canary")
    services = [config.project.services[0].model_copy(update={"replicas": 1})]
    project = ProjectSettings.model_validate({**config.project.model_dump(by_alias=True), "services": [s.model_dump(by_alias=True) for s in services]})
    assert StackConfig(project=project, stage=Stage.model_validate(config.stage.model_dump(by_alias=True))).stage.weight == 10


# The Day-0 plan (../shared/seed/day0-rollout-plan.md, sections 4.1-4.3), as its users wrote it.
PLAN_STAGES = {"canary": 10, "gradual": 50, "majority": 80, "full": 100}
PLAN_STAGE_STARTS = {"canary": "2025-11-03T09:00Z", "gradual": "2025-11-05T09:00Z", "majority": "2025-11-07T09:00Z", "full": "2025-11-09T09:00Z"}
PLAN_ROLLBACK = {"test_pass_rate": (0.98, 0.95), "error_rate": (0.001, 0.01), "p95_latency_seconds": (0.2, 0.5)}


@pytest.mark.parametrize("stage", list(PLAN_STAGES))
def test_the_shipped_stage_files_keep_the_plans_timing_and_triggers(stage):
    """48 h per stage, a check every 5 minutes, rollback on the 3rd violation in a row, on the
    plan's three thresholds: read from the stage files exactly as `pulumi up` and the bot do,
    and carried into the alert rules (`for:` = 2 x 5 min, so an alert fires on the 3rd check)."""
    from datetime import timedelta

    from rollout.monitoring.alert_rules import stack_rule_groups

    raw = yaml.safe_load((REPO_ROOT / f"Pulumi.{stage}.yaml").read_text())["config"]["genesis-rollout:analysis"]
    assert (raw["hold"], raw["checkInterval"], raw["consecutiveFailures"]) == ("48h", "5m", 3)  # written out, not defaults
    config = load_stack_config(REPO_ROOT, stage)
    analysis = config.stage.analysis
    assert config.stage.weight == PLAN_STAGES[stage]
    assert analysis.hold == timedelta(hours=48) and analysis.check_interval == timedelta(minutes=5)
    assert analysis.consecutive_failures == 3
    for name, (target, critical) in PLAN_ROLLBACK.items():
        gate = getattr(config.stage.gates, name)
        assert (gate.target, gate.critical, gate.rollback) == (target, critical, True), name
    alerts = {r["alert"]: r for g in stack_rule_groups(config)["groups"] for r in g["rules"] if "alert" in r}
    for name in ("GenesisErrorRateCritical", "GenesisP95LatencyCritical", "GenesisTestPassRateCritical"):
        assert alerts[name]["for"] == "10m" and alerts[name]["labels"]["severity"] == "critical"


def test_the_shipped_holds_reach_full_traffic_on_day_seven():
    """Stage starts 48 h apart from Nov 3 09:00 UTC put `full` at Nov 9 09:00, as the plan's table."""
    from datetime import datetime

    release = load_release(REPO_ROOT)
    start = datetime.fromisoformat(PLAN_STAGE_STARTS["canary"])
    for stage in release.stages[1:]:
        assert start == datetime.fromisoformat(PLAN_STAGE_STARTS[stage.name]), stage.name
        start += stage.analysis.hold


@pytest.mark.parametrize("policy", ["seed", "flagger", "argo", "fastest-thresholds", "recommended"])
def test_the_benchmark_policies_are_valid_stage_files(policy):
    """`rollout replay --policy` reads them: the stage-file schema, the project's stages."""
    from rollout.config import load_policy_file

    config = load_policy_file(REPO_ROOT, REPO_ROOT / "benchmarks" / "policies" / f"{policy}.yaml")
    analysis = config.stage.analysis
    assert config.stage.name == "canary" and analysis.hold.total_seconds() == 48 * 3600
    if policy == "seed":
        assert config.stage == load_stack_config(REPO_ROOT, "canary").stage  # exactly the plan's
    if policy in ("flagger", "argo"):
        assert analysis.cumulative_failures is not None  # they count failures over the stage
    if policy == "recommended":  # the judge on every gate with counts behind it
        assert [name for name, _ in config.stage.gates.judged()] == list(config.stage.gates.JUDGEABLE)


def _gates_with(project, gate: str, **settings):
    data = yaml.safe_load((project / "Pulumi.canary.yaml").read_text())
    gates = data["config"]["genesis-rollout:gates"]
    gates[gate] = {**gates[gate], **settings}
    return gates


@pytest.mark.parametrize(("gate", "settings", "problem"), [
    ("testPassRate", {"judge": {"tolerance": 0.5}},
     "genesis-rollout:gates: testPassRate.judge: the judge compares counts"),
    ("errorRate", {"judge": {"tolerance": -1}},
     "genesis-rollout:gates.errorRate.judge.tolerance: Input should be greater than or equal to 0 (got -1)"),
    ("errorRate", {"judge": {"tolerance": 0.5, "alpha": 1}},
     "genesis-rollout:gates.errorRate.judge.alpha: Input should be less than 1 (got 1)"),
    ("errorRate", {"judge": {"tolerance": 0.5, "minCanaryEvent": 3}},
     "genesis-rollout:gates.errorRate.judge.minCanaryEvent: unknown key; did you mean 'minCanaryEvents'?"),
])
def test_a_bad_judge_setting_names_the_gate_and_the_rule(tmp_path, gate, settings, problem):
    """A judge on a gate without counts, or outside its domain, never reaches the cluster."""
    project = copy_project(tmp_path)
    edit_stage_file(project, "canary", "gates", _gates_with(project, gate, **settings))
    with pytest.raises(ConfigError) as caught:
        load_stack_config(project, "canary")
    assert str(caught.value).startswith("Pulumi.canary.yaml: invalid configuration")
    assert caught.value.problems[0].startswith(problem), caught.value.problems


def test_a_stage_alpha_outside_0_1_is_refused(tmp_path):
    project = copy_project(tmp_path)
    data = yaml.safe_load((project / "Pulumi.canary.yaml").read_text())
    edit_stage_file(project, "canary", "analysis", {**data["config"]["genesis-rollout:analysis"], "judgeAlpha": 0})
    with pytest.raises(ConfigError) as caught:
        load_stack_config(project, "canary")
    assert caught.value.problems == [
        "genesis-rollout:analysis.judgeAlpha: Input should be greater than 0 (got 0)"]


# --------------------------------------------------------------------------- strict stage files (moved from the probes of issue 10)


@pytest.mark.parametrize(
    ("text", "problem"),
    [("  genesis-rollout:stage:\n    name: canary\n    weight: 10\n    weight: 10\n", "key 'weight' appears twice"),
     (None, "stage.weight: Input should be a valid integer (got True)")],
    ids=["duplicate-key", "bool-weight"],
)
def test_stage_files_with_duplicate_keys_or_booleans_for_numbers_are_refused(tmp_path: Path, text, problem) -> None:
    """Was: the last one won silently; `true` was taken as 1."""
    project = copy_project(tmp_path)
    path = project / "Pulumi.canary.yaml"
    if text is None:
        edit_stage_file(project, "canary", "stage", {"name": "canary", "weight": True})
    else:
        original = path.read_text()
        start = original.index("  genesis-rollout:stage:")
        end = original.index("  genesis-rollout:analysis:")
        path.write_text(original[:start] + text + original[end:])
    with pytest.raises(ConfigError) as caught:
        load_stack_config(project, "canary")
    assert caught.value.source == "Pulumi.canary.yaml" and problem in str(caught.value)


def test_a_secret_pasted_into_the_project_file_is_refused_without_printing_it(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    path = project / "Pulumi.yaml"
    data = yaml.safe_load(path.read_text())
    data["config"]["genesis-rollout:monitoring"]["value"]["alerting"]["pagerduty"]["routingKey"] = "R0UTINGKEY-0123456789abcdef"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ConfigError) as caught:
        load_stack_config(project, "canary")
    assert "routingKey" in str(caught.value) and "R0UTINGKEY" not in str(caught.value)
    assert "value not shown" in str(caught.value)


def test_the_plans_rollback_triggers_cannot_be_switched_off(tmp_path: Path) -> None:
    """Was: accepted: a 50% error rate held for ever."""
    project = copy_project(tmp_path)
    gates = yaml.safe_load((project / "Pulumi.canary.yaml").read_text())["config"]["genesis-rollout:gates"]
    for name in ("errorRate", "p95LatencySeconds", "testPassRate"):
        edit_stage_file(project, "canary", "gates", {**gates, name: {**gates[name], "rollback": False}})
        with pytest.raises(ConfigError, match=f"gates: {name}: is one of the plan's rollback triggers"):
            load_stack_config(project, "canary")
