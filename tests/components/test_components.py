"""Components under the Pulumi mock runtime (stand-in for the engine, which cannot run here):
the three routers, replica splits, hardened containers, PDB and topology spread."""

from __future__ import annotations

import pytest
from support.stack import rendered, route_weights, run_values, stage_values

from components.feature_flags import flagd_document
from components.routers import ROUTERS, router_for, weighted_split
from components.routers.replica_ratio import ratio_split
from rollout.model import STAGE_ORDER

ISTIO_HOST = "genesis.genesis.svc.cluster.local"


def with_router(stage: str, router: str, **routing):
    values = stage_values(stage)
    values["routing"] = {**values["routing"], "router": router, **routing}
    return run_values(values)


def test_router_factory_knows_exactly_three_routers():
    assert sorted(ROUTERS) == ["gateway-api", "istio", "replica-ratio"]
    with pytest.raises(ValueError, match="unknown router 'smi'"):
        router_for("smi")


@pytest.mark.parametrize(("replicas", "weight", "canary"), [(10, 0, 0), (10, 10, 1), (10, 50, 5), (10, 80, 8), (10, 100, 10), (4, 10, 1), (3, 50, 2)])
def test_weighted_split_keeps_stable_whole_and_scales_canary(replicas, weight, canary):
    split = weighted_split(replicas, weight)
    assert (split.stable_replicas, split.canary_replicas) == (replicas, canary)
    assert (split.stable_weight, split.canary_weight) == (100 - weight, weight)


@pytest.mark.parametrize(("replicas", "weight", "stable", "canary", "effective"), [
    (10, 0, 10, 0, 0), (10, 10, 9, 1, 10), (10, 50, 5, 5, 50), (10, 80, 2, 8, 80), (10, 100, 0, 10, 100),
    (4, 10, 3, 1, 25),  # coarse: one pod of four is 25%, not 10%
    (4, 95, 1, 3, 75),  # stable keeps a pod below 100%
])
def test_replica_ratio_split_approximates_the_weight(replicas, weight, stable, canary, effective):
    split = ratio_split(replicas, weight)
    assert (split.stable_replicas, split.canary_replicas) == (stable, canary)
    assert split.canary_weight == effective and split.stable_weight == 100 - effective


def test_gateway_api_route_points_at_both_track_services():
    route = rendered("canary").resources["genesis-httproute"].inputs
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1" and route["kind"] == "HTTPRoute"
    spec = route["spec"]
    assert spec["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public", "namespace": "gateway-system"}]
    assert spec["hostnames"] == ["genesis.example.com"]
    refs = spec["rules"][0]["backendRefs"]
    assert [(r["name"], r["port"], r["weight"]) for r in refs] == [("genesis-stable", 8080, 90), ("genesis-canary", 8080, 10)]


@pytest.mark.parametrize("stage", STAGE_ORDER)
def test_istio_router_splits_by_track_subsets(stage):
    stack = with_router(stage, "istio")
    weight = stack.outputs["weight"]
    assert "genesis-httproute" not in stack.resources
    rule = stack.resources["genesis-destinationrule"].inputs
    assert rule["apiVersion"] == "networking.istio.io/v1" and rule["spec"]["host"] == ISTIO_HOST
    assert rule["spec"]["subsets"] == [{"name": "stable", "labels": {"track": "stable"}}, {"name": "canary", "labels": {"track": "canary"}}]
    service = stack.resources["genesis-virtualservice"].inputs["spec"]
    assert service["hosts"] == [ISTIO_HOST] and service["gateways"] == ["mesh"]
    routes = service["http"][0]["route"]
    assert {r["destination"]["subset"]: r["weight"] for r in routes} == {"stable": 100 - weight, "canary": weight}
    assert sum(r["weight"] for r in routes) == 100  # Istio rejects routes that do not add up to 100
    apex = stack.resources["genesis-service"].inputs
    assert apex["metadata"]["name"] == "genesis" and apex["spec"]["selector"] == {"app": "genesis"}
    assert stack.resources["genesis-stable-deployment"].inputs["spec"]["replicas"] == 10


def test_istio_with_an_ingress_gateway_adds_the_public_hostnames():
    stack = with_router("canary", "istio", istioGateways=["istio-system/public", "mesh"])
    spec = stack.resources["genesis-virtualservice"].inputs["spec"]
    assert spec["hosts"] == [ISTIO_HOST, "genesis.example.com"]
    assert spec["gateways"] == ["istio-system/public", "mesh"]


@pytest.mark.parametrize("stage", STAGE_ORDER)
def test_replica_ratio_router_uses_one_service_and_pod_counts(stage):
    stack = with_router(stage, "replica-ratio")
    weight = stack.outputs["weight"]
    assert not any(r.type.startswith("kubernetes:gateway") or "istio" in r.type for r in stack.resources.values())
    apex = stack.resources["genesis-service"].inputs["spec"]
    assert apex["selector"] == {"app": "genesis"}  # both tracks behind one Service
    stable = stack.resources["genesis-stable-deployment"].inputs["spec"]["replicas"]
    canary = stack.resources["genesis-canary-deployment"].inputs["spec"]["replicas"]
    assert stable + canary == 10
    assert canary == round(10 * weight / 100)
    summary = stack.outputs["services"]["genesis"]
    assert summary["routerExact"] is False and summary["routeWeights"]["canary"] == 100 * canary // 10


@pytest.mark.parametrize("router", sorted(ROUTERS))
def test_stable_pod_template_does_not_depend_on_router_or_stage(router):
    templates = {
        str(with_router(stage, router).resources["genesis-stable-deployment"].inputs["spec"]["template"])
        for stage in ("stable", "full")
    }
    assert len(templates) == 1


@pytest.mark.parametrize("track", ["stable", "canary"])
def test_containers_are_hardened(track):
    pod = rendered("gradual").resources[f"genesis-{track}-deployment"].inputs["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["image"] == f"ghcr.io/genesis/genesis:{'1.41.0' if track == 'stable' else '1.42.0'}"
    assert container["securityContext"] == {
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container["resources"] == {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}}
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz/live", "port": "http"}
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["tmp"] == "/tmp"
    assert {v["name"]: v for v in pod["volumes"]}["tmp"]["emptyDir"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["GENESIS_TRACK"] == track and env["FLAGD_OFFLINE_FLAG_SOURCE_PATH"] == "/etc/genesis/flags/flags.json"


def test_resources_and_probes_come_from_config():
    values = stage_values("canary")
    service = values["services"][0]
    service["resources"] = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}}
    service["probes"] = {"readinessPath": "/ready", "livenessPath": "/alive"}
    service["port"] = 9090
    container = run_values(values).resources["genesis-canary-deployment"].inputs["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "1Gi"}
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/alive"
    assert container["ports"][0]["containerPort"] == 9090


def test_pod_disruption_budget_and_topology_spread():
    stack = rendered("canary")
    pdb = stack.resources["genesis-pdb"].inputs
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "genesis"}}}
    spread = stack.resources["genesis-canary-deployment"].inputs["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    assert all(c["labelSelector"]["matchLabels"] == {"app": "genesis", "track": "canary"} for c in spread)


def test_prometheus_scrapes_the_http_port_at_the_metrics_path():
    template = rendered("canary").resources["genesis-stable-deployment"].inputs["spec"]["template"]
    assert template["metadata"]["annotations"] == {"prometheus.io/scrape": "true", "prometheus.io/port": "8080", "prometheus.io/path": "/metrics"}


def test_flagd_document_default_variants_follow_the_flags():
    from rollout.config import load_stack_config

    flags = load_stack_config(".", "stable").stage.flags
    document = flagd_document(flags)
    assert document["flags"]["fallback-mode"]["defaultVariant"] == "on"
    assert document["flags"]["spice-task-generation"]["defaultVariant"] == "off"
    assert list(document["flags"]) == sorted(document["flags"])


def test_route_weights_helper_reads_the_rendered_route():
    assert route_weights(rendered("full")) == {"stable": 0, "canary": 100}
