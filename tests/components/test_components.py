"""Components under the Pulumi mock runtime (stand-in for the engine, which cannot run here):
the three routers, replica splits, hardened containers, PDBs and topology spread."""

from __future__ import annotations

import pytest
from support.stack import (
    rendered,
    route_weights,
    run_values,
    set_path,
    stage_values,
    weighted_rule,
    with_router,
)

from components.feature_flags import flagd_document
from components.routers import ROUTERS, router_for
from rollout.model import STAGE_ORDER, ratio_split, weighted_split

ISTIO_HOST = "genesis.genesis.svc.cluster.local"
HEADER = {"type": "Exact", "name": "x-genesis-track", "value": "canary"}


def test_router_factory_knows_exactly_three_routers():
    assert sorted(ROUTERS) == ["gateway-api", "istio", "replica-ratio"]
    with pytest.raises(ValueError, match="unknown router 'smi'"):
        router_for("smi")


@pytest.mark.parametrize(("replicas", "weight", "canary"), [(10, 0, 0), (10, 10, 2), (10, 50, 5), (10, 80, 8), (10, 100, 10), (4, 10, 2), (3, 50, 2), (1, 100, 2)])
def test_weighted_split_keeps_stable_whole_and_scales_canary(replicas, weight, canary):
    split = weighted_split(replicas, weight)
    assert (split.stable_replicas, split.canary_replicas) == (replicas, canary)
    assert (split.stable_weight, split.canary_weight) == (100 - weight, weight)


@pytest.mark.parametrize(("replicas", "weight", "stable", "canary", "effective"), [
    (10, 0, 10, 0, 0), (10, 10, 9, 1, 10), (10, 50, 5, 5, 50), (10, 80, 2, 8, 80), (10, 100, 0, 10, 100),
    (4, 10, 3, 1, 25),  # coarse: one pod of four is 25%, not 10% (the config refuses such a stage)
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
    refs = weighted_rule(route)["backendRefs"]
    assert [(r["name"], r["port"], r["weight"]) for r in refs] == [("genesis-stable", 8080, 90), ("genesis-canary", 8080, 10)]


@pytest.mark.parametrize("stage", STAGE_ORDER)
def test_gateway_api_header_rule_reaches_the_canary_whenever_it_has_pods(stage):
    stack = rendered(stage)
    rules = stack.resources["genesis-httproute"].inputs["spec"]["rules"]
    (rule,) = [r for r in rules if any("headers" in m for m in r["matches"])]
    assert rules[0] == rule
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}, "headers": [HEADER]}]
    # no canary pods at weight 0: a pinned request goes to stable rather than failing
    track = "canary" if stack.outputs["weight"] > 0 else "stable"
    assert [(r["name"], r["weight"]) for r in rule["backendRefs"]] == [(f"genesis-{track}", 1)]
    # same path as the weighted rule plus a header: Gateway API gives it precedence
    assert weighted_rule(stack.resources["genesis-httproute"].inputs)["matches"] == [{"path": rule["matches"][0]["path"]}]


def test_the_canary_header_is_configurable_and_can_be_switched_off():
    values = stage_values("canary")
    values["routing"]["canaryHeader"] = {"name": "x-qa", "value": "yes"}
    rules = run_values(values).resources["genesis-httproute"].inputs["spec"]["rules"]
    assert rules[0]["matches"][0]["headers"] == [{"type": "Exact", "name": "x-qa", "value": "yes"}]
    values["routing"]["canaryHeader"] = None
    assert len(run_values(values).resources["genesis-httproute"].inputs["spec"]["rules"]) == 1


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
    routes = {r["name"]: r for r in service["http"]}
    assert service["http"][-1]["name"] == "weighted"
    split = {r["destination"]["subset"]: r["weight"] for r in routes["weighted"]["route"]}
    assert split == {"stable": 100 - weight, "canary": weight}
    assert sum(split.values()) == 100  # Istio rejects routes that do not add up to 100
    pinned = routes["canary-by-header"]
    assert service["http"][0] == pinned  # matched first
    assert pinned["match"] == [{"headers": {"x-genesis-track": {"exact": "canary"}}}]
    track = "canary" if weight else "stable"  # no canary pods at weight 0
    assert [(r["destination"]["subset"], r["weight"]) for r in pinned["route"]] == [(track, 100)]
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
    assert "sessionAffinity" not in apex
    stable = stack.resources["genesis-stable-deployment"].inputs["spec"]["replicas"]
    canary = stack.resources["genesis-canary-deployment"].inputs["spec"]["replicas"]
    assert stable + canary == 10
    assert canary == round(10 * weight / 100)
    summary = stack.outputs["services"]["genesis"]
    assert summary["routerExact"] is False and summary["routeWeights"]["canary"] == 100 * canary // 10


def test_session_affinity_on_replica_ratio_and_refused_where_a_router_cannot_keep_it():
    stack = with_router("gradual", "replica-ratio", sessionAffinity=True)
    assert stack.resources["genesis-service"].inputs["spec"]["sessionAffinity"] == "ClientIP"
    with pytest.raises(Exception, match="sessionAffinity is only supported with router replica-ratio"):
        with_router("gradual", "istio", sessionAffinity=True)


def _templates(router: str, track: str) -> dict[str, str]:
    return {
        stage: repr(with_router(stage, router).resources[f"genesis-{track}-deployment"].inputs["spec"]["template"])
        for stage in STAGE_ORDER
    }


@pytest.mark.parametrize("track", ["stable", "canary"])
def test_pod_templates_are_identical_across_every_stage_and_every_router(track):
    """A pod template change restarts pods: no stage change and no router choice may cause one."""
    templates = {(router, stage): text for router in sorted(ROUTERS) for stage, text in _templates(router, track).items()}
    assert len(set(templates.values())) == 1, sorted({k[0] for k in templates})


@pytest.mark.parametrize("track", ["stable", "canary"])
def test_containers_are_hardened(track):
    pod = rendered("gradual").resources[f"genesis-{track}-deployment"].inputs["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
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
    # liveness and readiness only once started: 24 x 5 s of start-up before a restart
    assert container["startupProbe"] == {
        "httpGet": {"path": "/healthz/live", "port": "http"}, "periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 24,
    }
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["tmp"] == "/tmp"
    assert {v["name"]: v for v in pod["volumes"]}["tmp"]["emptyDir"]


@pytest.mark.parametrize("track", ["stable", "canary"])
def test_a_stopping_pod_drains_within_its_grace_period(track):
    pod = rendered("majority").resources[f"genesis-{track}-deployment"].inputs["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["lifecycle"] == {"preStop": {"sleep": {"seconds": 15}}}
    assert pod["terminationGracePeriodSeconds"] == 15 + 30  # drain, then the app's own shutdown


def test_drain_seconds_come_from_routing_config():
    values = stage_values("canary")
    values["routing"]["drainSeconds"] = 40
    pod = run_values(values).resources["genesis-canary-deployment"].inputs["spec"]["template"]["spec"]
    assert pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"] == 40
    assert pod["terminationGracePeriodSeconds"] == 70


@pytest.mark.parametrize("track", ["stable", "canary"])
def test_deployments_roll_without_losing_capacity(track):
    spec = rendered("gradual").resources[f"genesis-{track}-deployment"].inputs["spec"]
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}}
    assert spec["minReadySeconds"] == 5 and spec["progressDeadlineSeconds"] == 600
    assert spec["revisionHistoryLimit"] == 5
    assert spec["selector"] == {"matchLabels": {"app": "genesis", "track": track}}


@pytest.mark.parametrize("track", ["stable", "canary"])
def test_pod_templates_carry_the_recommended_labels(track):
    labels = rendered("canary").resources[f"genesis-{track}-deployment"].inputs["spec"]["template"]["metadata"]["labels"]
    version = "1.41.0" if track == "stable" else "1.42.0"
    assert labels == {
        "app": "genesis", "track": track, "version": version,
        "app.kubernetes.io/name": "genesis", "app.kubernetes.io/instance": f"genesis-{track}",
        "app.kubernetes.io/version": version, "app.kubernetes.io/component": track,
        "app.kubernetes.io/part-of": "genesis-rollout", "app.kubernetes.io/managed-by": "pulumi",
    }


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
    assert container["startupProbe"]["httpGet"]["path"] == "/alive"
    assert container["ports"][0]["containerPort"] == 9090


@pytest.mark.parametrize("track", ["stable", "canary"])
def test_one_percentage_pod_disruption_budget_per_track(track):
    stack = rendered("canary")
    assert "genesis-pdb" not in stack.resources  # no budget spanning both tracks
    pdb = stack.resources[f"genesis-{track}-pdb"].inputs
    assert pdb["apiVersion"] == "policy/v1" and pdb["metadata"]["name"] == f"genesis-{track}"
    assert pdb["spec"] == {
        "maxUnavailable": "10%",
        "unhealthyPodEvictionPolicy": "AlwaysAllow",  # an unready pod never blocks a node drain
        "selector": {"matchLabels": {"app": "genesis", "track": track}},
    }


def test_topology_spread_is_per_track():
    spread = rendered("canary").resources["genesis-canary-deployment"].inputs["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    assert all(c["labelSelector"]["matchLabels"] == {"app": "genesis", "track": "canary"} for c in spread)


def test_prometheus_scrapes_the_http_port_at_the_metrics_path():
    template = rendered("canary").resources["genesis-stable-deployment"].inputs["spec"]["template"]
    annotations = {k: v for k, v in template["metadata"]["annotations"].items() if k.startswith("prometheus.io/")}
    assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": "8080", "prometheus.io/path": "/metrics"}


def test_flagd_document_default_variants_follow_the_flags():
    from rollout.config import load_stack_config

    flags = load_stack_config(".", "stable").stage.flags
    document = flagd_document(flags)
    assert document["flags"]["fallback-mode"]["defaultVariant"] == "on"
    assert document["flags"]["spice-task-generation"]["defaultVariant"] == "off"
    assert list(document["flags"]) == sorted(document["flags"])


def test_route_weights_helper_reads_the_rendered_route():
    assert route_weights(rendered("full")) == {"stable": 0, "canary": 100}


def _canary(values: dict) -> tuple[dict, str]:
    """The canary Deployment's pod template and the exported canaryTemplate id."""
    stack = run_values(values)
    template = stack.resources["genesis-canary-deployment"].inputs["spec"]["template"]
    return template, stack.outputs["services"]["genesis"]["canaryTemplate"]


@pytest.mark.parametrize(
    ("path", "value", "rolls"),
    [
        ("services[0].replicas", 12, False),  # more pods, the same pods: the hold goes on
        ("services[0].maxUnavailable", "20%", False),  # the PDB, not the pods
        ("services[0].errorGaugeWindow", "5m", False),  # how the judge reads a gauge
        ("services[0].stable.image", "ghcr.io/genesis/genesis:1.40.0", False),  # the other track
        ("services[0].canary.image", "ghcr.io/genesis/genesis:1.43.0", True),
        ("services[0].resources.limits.memory", "3Gi", True),
        ("routing.drainSeconds", 30, True),  # preStop sleep, grace period, sidecar drain
    ],
)
def test_the_canary_template_id_changes_exactly_when_the_canary_pod_template_does(path, value, rolls):
    """The bot restarts a stage's hold when canaryTemplate changes (issue 20: a changed canary
    keeps no old soak time), so it follows the pod template the Deployment gets, nothing else."""
    template, template_id = _canary(stage_values("canary"))
    changed_template, changed_id = _canary(set_path(stage_values("canary"), path, value))
    assert (changed_template != template) is rolls
    assert (changed_id != template_id) is rolls
