"""`rollout render`: files written per object, and every rendered object valid for Kubernetes.

Stand-ins: the program runs under the Pulumi mock runtime (no CLI here) and objects are checked
offline (no API server here): core kinds with kubernetes-validate (strict), Gateway API and
Istio kinds with the @kubernetes-models CRD schemas via node.
"""

from __future__ import annotations

import difflib

import pytest
import yaml
from support.k8s_validation import core_errors, crd_errors, crd_results
from support.stack import (
    REPO_ROOT,
    copy_project,
    objects,
    run_values,
    stage_values,
    weighted_rule,
)

from components.routers import ROUTERS
from rollout.model import STAGE_ORDER
from rollout.review.render import MANIFESTS_DIR, RenderContext, render, to_yaml


@pytest.mark.parametrize("stage", STAGE_ORDER)
def test_render_writes_one_sorted_yaml_file_per_object(stage, tmp_path):
    result = render(REPO_ROOT, stage, tmp_path)
    manifests = sorted((tmp_path / MANIFESTS_DIR).rglob("*.yaml"))
    written = {p.relative_to(tmp_path / MANIFESTS_DIR).as_posix() for p in manifests}
    assert written >= {
        "genesis/configmap-genesis-flags-canary.yaml",
        "genesis/configmap-genesis-flags-stable.yaml",
        "genesis/deployment-genesis-canary.yaml",
        "genesis/deployment-genesis-stable.yaml",
        "genesis/httproute-genesis.yaml",
        "genesis/poddisruptionbudget-genesis-canary.yaml",
        "genesis/poddisruptionbudget-genesis-stable.yaml",
        "genesis/service-genesis-canary.yaml",
        "genesis/service-genesis-stable.yaml",
    }
    assert len(manifests) == len([r for r in result.stack.kubernetes_objects() if r.inputs.get("kind")])
    assert set(manifests) <= set(result.files)
    assert not any(result.stack.resources[name].is_kubernetes for name in result.skipped)
    for path in manifests:
        text = path.read_text()
        data = yaml.safe_load(text)
        assert text.splitlines()[1:] == to_yaml(data).splitlines()  # sorted keys, stable output
    assert result.stack.outputs["stage"] == stage
    route = yaml.safe_load((tmp_path / MANIFESTS_DIR / "genesis/httproute-genesis.yaml").read_text())
    assert weighted_rule(route)["backendRefs"][1]["weight"] == result.stack.outputs["weight"]
    core = [yaml.safe_load(p.read_text()) for p in manifests]
    assert core_errors(core) == [] and crd_errors(core) == []


def test_render_is_deterministic_and_drops_objects_no_longer_declared(tmp_path):
    first = render(REPO_ROOT, "gradual", tmp_path)
    contents = {p: p.read_text() for p in first.files}
    stale = tmp_path / MANIFESTS_DIR / "genesis" / "deployment-old.yaml"
    stale.write_text("kind: Deployment\n")
    again = render(REPO_ROOT, "gradual", tmp_path)
    assert again.files == first.files and not stale.exists()
    assert {p: p.read_text() for p in again.files} == contents


def test_render_runs_extra_artifact_writers(tmp_path):
    seen: list[RenderContext] = []

    def alerts_writer(context: RenderContext):
        seen.append(context)
        path = context.out_dir / "alerts" / "rules.yaml"
        path.parent.mkdir()
        path.write_text(f"weight: {context.config.stage.weight}\n")
        return [path]

    result = render(REPO_ROOT, "majority", tmp_path, writers=[alerts_writer])
    assert result.files == [tmp_path / "alerts" / "rules.yaml"]
    assert seen[0].stage == "majority" and seen[0].stack.outputs["weight"] == 80
    assert (tmp_path / "alerts" / "rules.yaml").read_text() == "weight: 80\n"


def test_render_refuses_a_bad_stage_file(tmp_path):
    from rollout.config import ConfigError

    project = copy_project(tmp_path)
    path = project / "Pulumi.canary.yaml"
    path.write_text(path.read_text().replace("weight: 10", "weight: 150"))
    with pytest.raises(ConfigError, match=r"Pulumi.canary.yaml[\s\S]*genesis-rollout:stage.weight"):
        render(project, "canary", tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("router", sorted(ROUTERS))
@pytest.mark.parametrize("stage", ["stable", "canary", "full"])
def test_every_object_of_every_router_validates(router, stage):
    values = stage_values(stage)
    values["routing"] = {**values["routing"], "router": router, "istioGateways": ["istio-system/public", "mesh"]}
    rendered = objects(run_values(values))
    assert core_errors(rendered) == []
    assert crd_errors(rendered) == []


def test_several_services_validate():
    values = stage_values("gradual")
    values["services"] = [{**values["services"][0], "name": n} for n in ("genesis", "spice", "pipelex")]
    stack = run_values(values)
    for name in ("genesis", "spice", "pipelex"):
        assert len([r for r in stack.subtree(name) if r.is_kubernetes]) == 9
    rendered = objects(stack)
    assert core_errors(rendered) == [] and crd_errors(rendered) == []


def test_validators_reject_broken_objects():
    """The validators are not rubber stamps: each catches a broken object of its kind."""
    good = objects(run_values(stage_values("canary")))
    deployment = next(o for o in good if o["kind"] == "Deployment")
    broken = {**deployment, "spec": {**deployment["spec"], "replicas": "ten", "surprise": True}}
    assert len(core_errors([broken])) >= 1
    route = next(o for o in good if o["kind"] == "HTTPRoute")
    rule = {**route["spec"]["rules"][0], "backendRefs": [{"name": "genesis-canary", "port": 70000, "weight": 10}]}
    bad_route = {**route, "spec": {**route["spec"], "rules": [rule]}}
    (result,) = crd_results([bad_route])
    assert result["valid"] is False and any("port" in e for e in result["errors"])
    unknown = {"apiVersion": "gateway.networking.k8s.io/v9", "kind": "HTTPRoute", "metadata": {"name": "x"}}
    (result,) = crd_results([unknown])
    assert result["valid"] is False and "no validator" in result["errors"][0]


def test_render_writes_rules_routing_dashboards_and_chart_values_beside_the_manifests(tmp_path):
    """The monitoring artifacts of a stage, checked by the real promtool and amtool."""
    import json
    import subprocess

    from rollout.config import load_stack_config
    from rollout.monitoring.dashboard import build_dashboard

    result = render(REPO_ROOT, "canary", tmp_path)
    rules = tmp_path / "alerts" / "genesis-rollout.rules.yaml"
    routing = tmp_path / "alertmanager" / "alertmanager.yaml"
    board = tmp_path / "grafana" / "genesis-release.json"
    values = tmp_path / "helm" / "kube-prometheus-stack-values.yaml"
    assert {rules, routing, board, values} <= set(result.files)

    checked = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    checked = subprocess.run(["amtool", "check-config", str(routing)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = load_stack_config(REPO_ROOT, "canary")
    assert json.loads(board.read_text()) == build_dashboard(config.stage, config.project.stage_order)
    assert "retention: 15d" in values.read_text()
    # the same rules reach the cluster as the PrometheusRule's spec
    rule_object = yaml.safe_load((tmp_path / "manifests/monitoring/prometheusrule-genesis-rollout.yaml").read_text())
    assert rule_object["spec"]["groups"] == yaml.safe_load(rules.read_text())["groups"]


def test_existing_mode_renders_the_alertmanager_config_object_and_no_alertmanager_file(tmp_path):
    project = copy_project(tmp_path)
    path = project / "Pulumi.yaml"
    data = yaml.safe_load(path.read_text())
    data["config"]["genesis-rollout:monitoring"]["value"]["mode"] = "existing"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "out"
    result = render(project, "canary", out)
    manifest = out / "manifests" / "genesis" / "alertmanagerconfig-genesis-rollout.yaml"
    assert manifest in result.files
    document = yaml.safe_load(manifest.read_text())
    assert document["apiVersion"] == "monitoring.coreos.com/v1alpha1" and document["spec"]["route"]["matchers"]
    assert not list((out / "alertmanager").glob("*.yaml")) and not list((out / "helm").glob("*"))
    assert crd_errors([document]) == []


def test_the_flags_configmap_is_a_readable_literal_block_that_flagd_still_loads(tmp_path):
    """GitOps diffs of a rendered flags ConfigMap show the flag line that changed: the flagd file
    is a YAML literal block (one JSON line per YAML line), and flagd's own evaluator core reads
    the rendered manifest (tools/validators/flagd.mjs takes a ConfigMap) to the stage's flags."""
    from support.k8s_validation import flagd_evaluate

    render(REPO_ROOT, "canary", tmp_path / "canary")
    render(REPO_ROOT, "gradual", tmp_path / "gradual")
    path = "genesis/configmap-genesis-flags-canary.yaml"
    texts = {s: (tmp_path / s / MANIFESTS_DIR / path).read_text() for s in ("canary", "gradual")}
    assert "  flags.json: |\n    {\n" in texts["canary"]
    diff = difflib.unified_diff(texts["canary"].splitlines(), texts["gradual"].splitlines(), lineterm="", n=0)
    changed = [line for line in diff if line[:1] in "+-" and line[:3] not in ("---", "+++")]
    assert changed == ['-          "defaultVariant": "off",', '+          "defaultVariant": "on",']
    canary, gradual = flagd_evaluate([texts["canary"], texts["gradual"]])
    assert canary["valid"] and gradual["valid"], (canary["errors"], gradual["errors"])
    assert (canary["values"]["pipelex-parallel-steps"], gradual["values"]["pipelex-parallel-steps"]) == (False, True)
