"""Bad configuration is refused by the program itself, before any resource is registered, with
an error naming the file, the key path and the rule. Runs under the Pulumi mock runtime
(stand-in for the Pulumi CLI, which cannot run here)."""

from __future__ import annotations

import pulumi
import pytest
import yaml
from support.stack import (
    NAMESPACE,
    REPO_ROOT,
    copy_project,
    delete_path,
    edit_stage_file,
    run_values,
    set_path,
    stage_values,
)

from components.program import StackConfigError
from rollout.config import ConfigError
from rollout.review.mock_runtime import RecordingMocks, render_stage, values_for_stage


def refused(values, project_dir=None) -> StackConfigError:
    """Run the program, expect a refusal, and check nothing was registered before it."""
    mocks = RecordingMocks()
    with pytest.raises(StackConfigError) as caught:
        if project_dir is None:
            run_values(values, mocks=mocks)
        else:
            run_values(values, project_dir=project_dir, mocks=mocks)
    assert mocks.registrations == [], "resources were registered before the config was refused"
    error = caught.value
    assert isinstance(error, ConfigError) and isinstance(error, pulumi.RunError)
    return error


@pytest.mark.parametrize(
    ("stage", "path", "value", "source", "key", "rule"),
    [
        ("canary", "stage.weight", 150, "Pulumi.canary.yaml", "stage.weight", "less than or equal to 100"),
        ("gradual", "stage.weight", -5, "Pulumi.gradual.yaml", "stage.weight", "greater than or equal to 0"),
        ("canary", "services[0].replicas", -1, "Pulumi.yaml", "services[0].replicas", "greater than or equal to 1"),
        ("canary", "gates.errorRate.target", 1.5, "Pulumi.canary.yaml", "gates.errorRate", "between 0 and 1"),
        ("canary", "gates.p95LatencySeconds.critical", 0.1, "Pulumi.canary.yaml", "gates.p95LatencySeconds", "critical (0.1) must be >= target"),
        ("canary", "services[0].stable.image", "ghcr.io/genesis/genesis", "Pulumi.yaml", "services[0].stable.image", "tag or digest"),
        ("canary", "routing.router", "nginx", "Pulumi.yaml", "routing.router", "gateway-api"),
        ("full", "analysis.consecutiveFailures", 0, "Pulumi.full.yaml", "analysis.consecutiveFailures", "greater than or equal to 1"),
        # the rollback target must switch the release's flags off
        ("stable", "flags.pipelex-workflows", True, "Pulumi.stable.yaml", "flags", "so it is the rollback target"),
    ],
)
def test_bad_values_are_refused_naming_file_key_and_rule(stage, path, value, source, key, rule):
    error = refused(set_path(stage_values(stage), path, value))
    assert error.source == source
    assert any(f"{NAMESPACE}:{key}" in p and rule in p for p in error.problems), error.problems


def test_missing_image_is_refused():
    error = refused(delete_path(stage_values("canary"), "services[0].canary.image"))
    assert error.source == "Pulumi.yaml"
    assert any(f"{NAMESPACE}:services[0].canary.image: Field required" in p for p in error.problems)


def test_missing_flag_is_refused():
    error = refused(delete_path(stage_values("canary"), "flags.fallback-mode"))
    assert any("flags" in p and "fallback-mode" in p and "missing" in p for p in error.problems)


def test_unknown_config_key_is_refused():
    values = stage_values("canary")
    values["weight"] = 10
    error = refused(values)
    assert error.problems == [f"{NAMESPACE}:weight: unknown key"]


def test_stage_not_in_the_stage_order_is_refused():
    values = set_path(stage_values("canary"), "stage.name", "hotfix")
    error = refused(values)
    assert error.source == "Pulumi.hotfix.yaml"
    assert "unknown stage 'hotfix'" in error.problems[0] and f"{NAMESPACE}:stage.name" in error.problems[0]


def test_duplicate_service_names_are_refused():
    values = stage_values("canary")
    values["services"].append({**values["services"][0], "namespace": "other"})
    error = refused(values)
    assert error.source == "Pulumi.yaml"
    assert f"{NAMESPACE}:services[1].name" in error.problems[0] and "unique" in error.problems[0]


def test_unknown_stage_has_no_stage_file():
    with pytest.raises(ConfigError) as caught:
        values_for_stage(".", "bogus")
    assert caught.value.source == "Pulumi.bogus.yaml"
    assert "no stage file for stage 'bogus'" in str(caught.value)


def test_decreasing_weights_in_the_stage_files_are_refused(tmp_path):
    project = copy_project(tmp_path)
    edit_stage_file(project, "majority", "stage", {"name": "majority", "weight": 40})
    error = refused(values_for_stage(project, "canary"), project_dir=project)
    assert "Pulumi.gradual.yaml" in error.source and "Pulumi.majority.yaml" in error.source
    assert any(
        f"{NAMESPACE}:stage.weight" in p and "weights must increase" in p and "'majority' (40)" in p
        for p in error.problems
    ), error.problems


def test_a_secret_in_a_stage_file_is_refused_by_key(tmp_path):
    project = copy_project(tmp_path)
    edit_stage_file(project, "canary", "slackWebhook", {"secure": "v1:abcdef"})
    values = values_for_stage(project, "canary")
    error = refused(values, project_dir=project)
    assert error.source == "Pulumi.canary.yaml"
    assert error.problems[0].startswith(f"{NAMESPACE}:slackWebhook: is a secret")
    assert "v1:abcdef" not in str(error)


def test_a_secret_inside_a_known_key_is_refused(tmp_path):
    project = copy_project(tmp_path)
    path = edit_stage_file(project, "canary", "stage", {"name": "canary", "weight": {"secure": "v1:xyz"}})
    assert "secure" in path.read_text()
    error = refused(values_for_stage(project, "canary"), project_dir=project)
    assert error.problems[0].startswith(f"{NAMESPACE}:stage: is a secret")


def test_malformed_yaml_names_the_file_and_line(tmp_path):
    project = copy_project(tmp_path)
    path = project / "Pulumi.gradual.yaml"
    path.write_text(path.read_text().replace("    weight: 50", "    weight: [50"))
    with pytest.raises(ConfigError) as caught:
        render_stage(project, "gradual")
    assert caught.value.source == "Pulumi.gradual.yaml"
    assert "malformed YAML" in str(caught.value) and "line" in str(caught.value)


def test_a_malformed_sibling_stage_file_stops_any_stage(tmp_path):
    """The release plan is validated as a whole: a broken later stage blocks applying an earlier one."""
    project = copy_project(tmp_path)
    (project / "Pulumi.full.yaml").write_text("config: [unclosed\n")
    error = refused(values_for_stage(project, "canary"), project_dir=project)
    assert error.source == "Pulumi.full.yaml" and "malformed YAML" in error.problems[0]


def test_the_repository_stage_files_parse_as_yaml_with_only_known_keys():
    for stage in ("stable", "canary", "gradual", "majority", "full"):
        data = yaml.safe_load((REPO_ROOT / f"Pulumi.{stage}.yaml").read_text())
        assert set(data) == {"config"}
