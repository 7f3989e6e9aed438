"""The whole Pulumi program (`__main__.py`) under the SDK's mock runtime.

Stand-in: the Pulumi CLI/engine and a Kubernetes API server cannot run here, so the program is
evaluated by `pulumi.runtime.set_mocks` (preview=False) and its registrations are inspected.
"""

from __future__ import annotations

import json

import pytest
from support.k8s_validation import flagd_evaluate
from support.stack import (
    REPO_ROOT,
    STAGES,
    rendered,
    route_weights,
    run_values,
    stage_values,
    weighted_rule,
)

from rollout.config import load_stack_config

WEIGHTS = {stage: load_stack_config(REPO_ROOT, stage).stage.weight for stage in STAGES}


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_file_renders_and_exports_its_stage(stage):
    stack = rendered(stage)
    assert stack.outputs["stage"] == stage
    assert stack.outputs["weight"] == WEIGHTS[stage]
    assert stack.outputs["router"] == "gateway-api"
    assert set(stack.outputs["services"]) == {"genesis"}
    kinds = sorted(r.inputs["kind"] for r in stack.subtree("genesis") if r.is_kubernetes)
    assert kinds == [
        "ConfigMap", "ConfigMap", "Deployment", "Deployment", "HTTPRoute",
        "PodDisruptionBudget", "PodDisruptionBudget", "Service", "Service",
    ]


@pytest.mark.parametrize("stage", STAGES)
def test_route_weights_equal_the_stage_weight(stage):
    weight = WEIGHTS[stage]
    assert route_weights(rendered(stage)) == {"stable": 100 - weight, "canary": weight}
    exported = rendered(stage).outputs["services"]["genesis"]["routeWeights"]
    assert exported == {"stable": 100 - weight, "canary": weight}


@pytest.mark.parametrize("stage", STAGES)
def test_replicas_follow_the_weight_and_stable_keeps_its_pods(stage):
    stack = rendered(stage)
    stable = stack.resources["genesis-stable-deployment"].inputs["spec"]["replicas"]
    canary = stack.resources["genesis-canary-deployment"].inputs["spec"]["replicas"]
    assert stable == 10  # Pulumi.yaml replicas, in every stage
    if WEIGHTS[stage] == 0:
        assert canary == 0
    else:
        assert canary >= 1 and canary >= 10 * WEIGHTS[stage] / 100


@pytest.mark.parametrize("track", ["stable", "canary"])
def test_pod_templates_are_byte_identical_in_every_stage(track):
    templates = {
        stage: json.dumps(rendered(stage).resources[f"genesis-{track}-deployment"].inputs["spec"]["template"], sort_keys=True)
        for stage in STAGES
    }
    assert len(set(templates.values())) == 1, "a stage changed the pod template: promotion would restart pods"


def test_only_replicas_differ_between_stage_deployments():
    first, last = rendered("stable"), rendered("full")
    for track in ("stable", "canary"):
        a = dict(first.resources[f"genesis-{track}-deployment"].inputs)
        b = dict(last.resources[f"genesis-{track}-deployment"].inputs)
        a["spec"] = {k: v for k, v in a["spec"].items() if k != "replicas"}
        b["spec"] = {k: v for k, v in b["spec"].items() if k != "replicas"}
        assert a == b


@pytest.mark.parametrize("stage", STAGES)
def test_canary_flags_configmap_carries_the_stage_flags_in_flagd_format(stage):
    flags = load_stack_config(REPO_ROOT, stage).stage.flags.values
    document = json.loads(rendered(stage).resources["genesis-canary-flags-configmap"].inputs["data"]["flags.json"])
    assert document["$schema"] == "https://flagd.dev/schema/v0/flags.json"
    assert set(document["flags"]) == set(flags) and len(flags) == 15
    for name, flag in document["flags"].items():
        assert flag["state"] == "ENABLED"
        assert flag["variants"] == {"on": True, "off": False}
        assert flag["defaultVariant"] == ("on" if flags[name] else "off")


def test_flagd_itself_evaluates_each_tracks_file_to_its_flags():
    """flagd's evaluator core (npm @openfeature/flagd-core) loads the file with strict schema
    validation, as the app's in-process provider would, and resolves every flag: the canary's
    file to the stage's flags, the stable track's to the rollback target's at every stage."""
    stable_flags = load_stack_config(REPO_ROOT, "stable").stage.flags.values
    cases = [(stage, track) for stage in STAGES for track in ("stable", "canary")]
    documents = [rendered(stage).resources[f"genesis-{track}-flags-configmap"].inputs["data"]["flags.json"] for stage, track in cases]
    for (stage, track), result in zip(cases, flagd_evaluate(documents)):
        assert result["valid"], result["errors"]
        expected = stable_flags if track == "stable" else load_stack_config(REPO_ROOT, stage).stage.flags.values
        assert result["values"] == expected, (stage, track)


def test_flagd_rejects_a_broken_flag_file():
    (result,) = flagd_evaluate(['{"flags": {"x": {"state": "ON", "variants": {"on": true}, "defaultVariant": "on"}}}'])
    assert result["valid"] is False and "state" in result["errors"][0]


def test_each_track_mounts_its_flags_configmap_as_a_directory():
    stack = rendered("canary")
    for track in ("stable", "canary"):
        pod = stack.resources[f"genesis-{track}-deployment"].inputs["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["flags"]["configMap"]["name"] == f"genesis-flags-{track}"
        mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "flags")
        assert "subPath" not in mount and mount["readOnly"] is True


def test_every_child_is_parented_to_its_component_and_named_explicitly():
    stack = rendered("gradual")
    for name, resource in stack.resources.items():
        if resource.custom and not resource.type.startswith("pulumi:providers:"):  # the program's one provider
            assert resource.parent is not None, f"{name} is not parented to a component"
    subtree = {r.name: r for r in stack.subtree("genesis")}
    components = {n for n, r in subtree.items() if not r.custom}
    assert components == {"genesis", "genesis-stable-flags", "genesis-canary-flags"}
    assert stack.resources["genesis"].parent is None
    for name, resource in subtree.items():
        if name == "genesis":
            continue
        assert resource.parent in components, f"{name} is not parented to a component"
        if resource.custom:
            metadata = resource.inputs["metadata"]
            assert metadata["name"] and metadata["namespace"] == "genesis", name
    names = sorted(r.inputs["metadata"]["name"] for r in subtree.values() if r.custom)
    assert names == [
        "genesis", "genesis-canary", "genesis-canary", "genesis-canary", "genesis-flags-canary",
        "genesis-flags-stable", "genesis-stable", "genesis-stable", "genesis-stable",
    ]


def test_pods_carry_app_track_and_version_labels():
    stack = rendered("canary")
    for track, version in (("stable", "1.41.0"), ("canary", "1.42.0")):
        spec = stack.resources[f"genesis-{track}-deployment"].inputs["spec"]
        labels = spec["template"]["metadata"]["labels"]
        assert {k: v for k, v in labels.items() if "/" not in k} == {"app": "genesis", "track": track, "version": version}
        assert spec["selector"]["matchLabels"] == {"app": "genesis", "track": track}
        service = stack.resources[f"genesis-{track}-service"].inputs["spec"]
        assert service["selector"] == {"app": "genesis", "track": track}
        assert service["ports"] == [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}]


def test_several_services_each_get_their_own_tracks_and_route():
    values = stage_values("majority")
    base = values["services"][0]
    values["services"] = [
        {**base, "name": name, "replicas": replicas}
        for name, replicas in (("genesis", 10), ("spice", 4), ("pipelex", 3))
    ]
    stack = run_values(values)
    assert set(stack.outputs["services"]) == {"genesis", "spice", "pipelex"}
    for name, replicas in (("genesis", 10), ("spice", 4), ("pipelex", 3)):
        assert route_weights(stack, name) == {"stable": 20, "canary": 80}
        assert stack.resources[f"{name}-stable-deployment"].inputs["spec"]["replicas"] == replicas
        assert stack.resources[f"{name}-canary-deployment"].inputs["spec"]["replicas"] == -(-replicas * 80 // 100)
        route = stack.resources[f"{name}-httproute"].inputs
        assert weighted_rule(route)["matches"] == [{"path": {"type": "PathPrefix", "value": f"/{name}"}}]
        assert stack.resources[f"{name}-stable-deployment"].parent == name
    assert len(stack.of_type("genesis:rollout:WeightedService")) == 3
    for name in ("genesis", "spice", "pipelex"):
        assert len([r for r in stack.subtree(name) if r.is_kubernetes]) == 9
