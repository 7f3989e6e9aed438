"""Safety properties of the rendered objects, for every stage and router, as a cluster would see
them. The program runs under the Pulumi SDK's mock runtime (the engine and a Kubernetes API
server cannot run here); the properties are about what it registers: provider, namespaces,
per-track flags, and the order in which one `pulumi up` changes things."""

from __future__ import annotations

import json
import math
import shutil

import pytest
from support.stack import (
    REPO_ROOT,
    copy_project,
    rendered,
    run_values,
    stage_values,
    with_router,
)

from components.feature_flags import flagd_json
from components.program import StackConfigError
from rollout.config import load_release
from rollout.model import STAGE_ORDER
from rollout.review.mock_runtime import RecordingMocks, RenderedStack

ROUTERS = ("gateway-api", "istio", "replica-ratio")
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding"}
RELEASE = load_release(REPO_ROOT)


def provider_of(stack: RenderedStack):
    (provider,) = [r for r in stack.resources.values() if r.type == "pulumi:providers:kubernetes"]
    return provider


@pytest.mark.parametrize("stage", STAGE_ORDER)
def test_every_kubernetes_object_goes_through_the_one_explicit_provider(stage):
    stack = rendered(stage)
    provider = provider_of(stack)
    reference = f"{provider.urn}::{provider.name}-id"  # 'urn::id', how the engine names a provider
    objects = stack.kubernetes_objects()
    assert len(objects) > 10
    assert {r.name: r.provider for r in objects} == {r.name: reference for r in objects}
    # the Helm chart is expanded by the provider itself: its children take it from `providers`
    chart = stack.resources["monitoring-kube-prometheus-stack"]
    assert chart.providers == {"kubernetes": reference}


def test_the_provider_names_the_cluster_and_updates_config_maps_in_place():
    inputs = provider_of(rendered("canary")).inputs
    assert inputs["context"] == "genesis-prod"  # from Pulumi.yaml, never the ambient context
    assert "kubeconfig" not in inputs  # $KUBECONFIG / ~/.kube/config, but always this context
    assert inputs["enableConfigMapMutable"] == "true"  # a flags change is an update, not delete+create
    assert inputs["enableServerSideApply"] == "true"


def test_a_kubeconfig_path_reaches_the_provider():
    values = stage_values("canary")
    values["cluster"] = {"kubeconfig": "/etc/genesis/kubeconfig", "namespaces": ["genesis", "monitoring"]}
    values["bot"] = {"mode": "external"}  # a path on a person's machine: the in-cluster bot refuses it
    inputs = provider_of(run_values(values)).inputs
    assert inputs["kubeconfig"] == "/etc/genesis/kubeconfig" and "context" not in inputs


@pytest.mark.parametrize(
    ("cluster", "message"),
    [
        ({"namespaces": ["genesis", "monitoring"]}, "name the cluster explicitly"),
        ({"context": "prod", "namespaces": ["genesis"]}, "monitoring.namespace 'monitoring', bot.namespace 'monitoring' not in the namespaces"),
        (None, "cluster: Field required"),
    ],
)
def test_a_cluster_that_is_not_named_or_namespaces_not_allowed_are_refused(cluster, message):
    values = stage_values("canary")
    if cluster is None:
        del values["cluster"]
    else:
        values["cluster"] = cluster
    with pytest.raises(StackConfigError, match=message):
        run_values(values)


@pytest.mark.parametrize("stage", STAGE_ORDER)
def test_every_namespaced_object_is_in_an_allowed_namespace(stage):
    allowed = set(RELEASE.project.cluster.namespaces)
    objects = rendered(stage).kubernetes_objects()
    namespaces = {r.name: r.inputs["metadata"].get("namespace") for r in objects if r.inputs["kind"] not in CLUSTER_SCOPED}
    assert {name: ns for name, ns in namespaces.items() if ns not in allowed} == {}
    # the only cluster-scoped objects: the in-cluster bot's rights for install mode (docs/bot.md)
    cluster_scoped = {r.name for r in objects if r.inputs["kind"] in CLUSTER_SCOPED}
    assert cluster_scoped == {"release-bot-clusterrole", "release-bot-clusterrolebinding"}


@pytest.mark.parametrize("router", ROUTERS)
@pytest.mark.parametrize("stage", STAGE_ORDER)
def test_stable_reads_the_rollback_targets_flags_and_canary_the_stages(stage, router):
    stack = with_router(stage, router)
    expected = {"stable": RELEASE.rollback_target.flags, "canary": RELEASE.stage(stage).flags}
    for track, flags in expected.items():
        config_map = stack.resources[f"genesis-{track}-flags-configmap"].inputs
        assert config_map["metadata"]["name"] == f"genesis-flags-{track}"
        assert config_map["data"] == {"flags.json": flagd_json(flags)}
        pod = stack.resources[f"genesis-{track}-deployment"].inputs["spec"]["template"]["spec"]
        (volume,) = [v for v in pod["volumes"] if v["name"] == "flags"]
        assert volume == {"name": "flags", "configMap": {"name": f"genesis-flags-{track}"}}
        env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
        # the flagd providers' file resolver; their default `rpc` would never read the file
        assert env["FLAGD_RESOLVER"] == "in-process"
        assert env["FLAGD_OFFLINE_FLAG_SOURCE_PATH"] == "/etc/genesis/flags/flags.json"
        mount = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}["flags"]
        assert "subPath" not in mount and mount["mountPath"] == "/etc/genesis/flags"


def test_at_the_canary_stage_the_stable_track_keeps_spice_and_pipelex_off():
    stable = json.loads(rendered("canary").resources["genesis-stable-flags-configmap"].inputs["data"]["flags.json"])
    canary = json.loads(rendered("canary").resources["genesis-canary-flags-configmap"].inputs["data"]["flags.json"])
    assert stable["flags"]["spice-task-generation"]["defaultVariant"] == "off"
    assert stable["flags"]["fallback-mode"]["defaultVariant"] == "on"
    assert canary["flags"]["spice-task-generation"]["defaultVariant"] == "on"


def test_the_program_refuses_to_run_without_the_rollback_target_stage_file(tmp_path):
    project = copy_project(tmp_path)
    (project / "Pulumi.stable.yaml").unlink()
    with pytest.raises(StackConfigError, match="the stable track reads the rollback target's flags.*Pulumi.stable.yaml"):
        run_values(stage_values("canary"), project_dir=project)
    shutil.rmtree(project)


def _depends(stack: RenderedStack, name: str, on: str) -> bool:
    return stack.resources[on].urn in stack.resources[name].dependencies


@pytest.mark.parametrize("router", ["gateway-api", "istio"])
@pytest.mark.parametrize("stage", STAGE_ORDER)
def test_one_pulumi_up_scales_the_gaining_track_before_the_weights_move(stage, router):
    """pulumi-kubernetes waits for a Deployment's new replicas to be ready; a dependency makes the
    engine finish that wait before it touches what depends on it."""
    stack = with_router(stage, router)
    route = "genesis-httproute" if router == "gateway-api" else "genesis-virtualservice"
    if RELEASE.stage(stage).weight > 0:  # reached from a lower weight: canary up, then route
        assert _depends(stack, route, "genesis-canary-deployment")
        assert _depends(stack, route, "genesis-stable-deployment")
        assert not _depends(stack, "genesis-canary-deployment", route)
    else:  # the rollback: route away from the canary, then scale it down
        assert _depends(stack, "genesis-canary-deployment", route)
        assert not _depends(stack, route, "genesis-canary-deployment")


@pytest.mark.parametrize("stage", STAGE_ORDER)
def test_replica_ratio_scales_the_receiving_track_up_before_the_other_down(stage):
    stack = with_router(stage, "replica-ratio")
    if RELEASE.stage(stage).weight > 0:
        assert _depends(stack, "genesis-stable-deployment", "genesis-canary-deployment")
    else:
        assert _depends(stack, "genesis-canary-deployment", "genesis-stable-deployment")


@pytest.mark.parametrize("track", ["stable", "canary"])
def test_pods_start_only_once_their_flags_file_exists(track):
    stack = rendered("gradual")
    assert _depends(stack, f"genesis-{track}-deployment", f"genesis-{track}-flags-configmap")


@pytest.mark.parametrize("router", ROUTERS)
def test_the_stack_exports_what_a_phased_stage_change_targets(router):
    stack = with_router("gradual", router)
    resources = stack.outputs["services"]["genesis"]["resources"]
    urns = {r.name: r.urn for r in stack.resources.values()}
    assert resources["deployments"] == {t: urns[f"genesis-{t}-deployment"] for t in ("stable", "canary")}
    assert resources["flags"] == {t: urns[f"genesis-{t}-flags-configmap"] for t in ("stable", "canary")}
    expected_routing = {"gateway-api": ["genesis-httproute"], "istio": ["genesis-virtualservice"], "replica-ratio": []}
    assert resources["routing"] == [urns[name] for name in expected_routing[router]]


def evictions_allowed(max_unavailable, replicas: int) -> int:
    """What the disruption controller allows: a percentage of the pods, rounded up."""
    if isinstance(max_unavailable, str) and max_unavailable.endswith("%"):
        return math.ceil(replicas * int(max_unavailable[:-1]) / 100)
    return int(max_unavailable)


@pytest.mark.parametrize("router", ROUTERS)
@pytest.mark.parametrize("stage", STAGE_ORDER)
def test_a_track_taking_traffic_never_runs_a_single_evictable_pod(stage, router):
    """A node drain or an autoscaler (voluntary evictions, which respect the PDB) never takes the
    last pod of a track the route still sends traffic to."""
    stack = with_router(stage, router)
    weights = {"canary": RELEASE.stage(stage).weight}
    weights["stable"] = 100 - weights["canary"]
    for track, weight in weights.items():
        replicas = stack.resources[f"genesis-{track}-deployment"].inputs["spec"]["replicas"]
        pdb = stack.resources[f"genesis-{track}-pdb"].inputs["spec"]
        assert pdb["selector"]["matchLabels"] == {"app": "genesis", "track": track}
        if replicas == 0:
            assert weight == 0 or (router == "replica-ratio" and track == "stable" and weight == 0)
            continue
        left = replicas - evictions_allowed(pdb["maxUnavailable"], replicas)
        assert left >= 1, (track, replicas, pdb)
        if track == "canary" and router != "replica-ratio":
            assert replicas >= 2  # and a second pod, not a blocked drain, carries it


def test_the_percentage_rule_is_what_a_single_pod_would_break():
    assert evictions_allowed("10%", 1) == 1  # 10% of 1 pod rounds up: the only pod may go
    assert evictions_allowed("10%", 2) == 1 and evictions_allowed(0, 1) == 0


@pytest.mark.parametrize("drain", [0, 15, 120])
def test_an_istio_sidecar_drains_at_least_as_long_as_the_app(drain):
    """Istio's sidecar stops after terminationDrainDuration (5 s default) whatever the app's
    preStop does; the pod's proxy.istio.io/config keeps it serving for the app's drain."""
    stack = with_router("gradual", "istio", drainSeconds=drain)
    for track in ("stable", "canary"):
        template = stack.resources[f"genesis-{track}-deployment"].inputs["spec"]["template"]
        proxy = json.loads(template["metadata"]["annotations"]["proxy.istio.io/config"])
        seconds = int(proxy["terminationDrainDuration"].removesuffix("s"))
        assert seconds >= drain
        assert seconds < template["spec"]["terminationGracePeriodSeconds"]  # inside the grace period


class DeployedAt(RecordingMocks):
    """The mock runtime with a stack whose last update exported `weight` (what the StackReference
    to the stack itself reads back from the state backend)."""

    def __init__(self, weight: int):
        super().__init__()
        self.weight = weight

    def new_resource(self, args):
        resource_id, state = super().new_resource(args)
        if args.typ == "pulumi:pulumi:StackReference":
            state = {**state, "outputs": {"stage": "majority", "weight": self.weight}}
        return resource_id, state


def test_a_step_back_by_hand_is_refused_before_any_kubernetes_object_changes():
    """`pulumi up --config-file Pulumi.canary.yaml` while majority (80%) is deployed: one update
    would scale the canary 8 -> 2 before 80% of the traffic leaves it."""
    mocks = DeployedAt(80)
    # the SDK wraps the refusal raised while resolving the provider's inputs (a ValueError naming
    # the provider), keeping its message: file, rule and the way out
    with pytest.raises(ValueError, match=r"(?s)pulumi:providers:kubernetes.*Pulumi.canary.yaml.*below the deployed canary weight \(80%\).*rollout rollback"):
        run_values(stage_values("canary"), mocks=mocks)
    assert [r.name for r in mocks.registrations if r.is_kubernetes or r.type == "pulumi:providers:kubernetes"] == []


@pytest.mark.parametrize(("deployed", "stage"), [(80, "stable"), (80, "full"), (10, "gradual"), (50, "gradual"), (None, "canary")])
def test_promotions_reapplies_and_the_rollback_are_not_step_backs(deployed, stage):
    mocks = DeployedAt(deployed) if deployed is not None else RecordingMocks()
    stack = run_values(stage_values(stage), mocks=mocks)
    assert provider_of(stack) and stack.kubernetes_objects()
