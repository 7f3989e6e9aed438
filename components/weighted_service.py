"""One service shipped progressively: a stable and a canary track and the traffic split between them.

Children (all parented to the component, all on the explicit Kubernetes provider, all with an
explicit `metadata.name` so Pulumi updates them in place instead of replacing them under a new
autonamed suffix):
- per track a flags ConfigMap `<app>-flags-<track>` (FeatureFlagSet): stable reads the rollback
  target's flags, canary the stage's;
- Deployments `<app>-stable` and `<app>-canary` (pod labels app, track, version);
- Services `<app>-stable` and `<app>-canary`, port `http` (also where Prometheus scrapes);
- the router's objects (HTTPRoute, or VirtualService + DestinationRule, or a Service);
- a PodDisruptionBudget per track.

Only Deployment replica counts, route weights, the canary's flags file and (for a track down to
one pod) its PDB budget depend on the stage. A pod template never does, so no stage change
restarts a pod.

Order within one `pulumi up` (pulumi-kubernetes waits for a Deployment's new replicas to be
ready before it reports the update done): the track that gains traffic is scaled before the
traffic moves, the track that loses it only after. A stage with canary weight above 0 is
reached from a lower weight, so the routes depend on the Deployments (canary scales up, then
the weights move); the weight-0 stage is the rollback, so the canary Deployment depends on the
routes (the weights move away, then the canary scales down). With the replica-ratio router the
gaining Deployment comes first. The bot applies a stage change in phases on top of this
(rollout.release.transition), which adds the scale-down delay.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.feature_flags import FLAGS_FILE, FeatureFlagSet
from components.routers import Router, RouteTarget, Split, router_for
from components.routers.base import TRACKS
from rollout.model import FeatureFlags, RoutingConfig, ServiceConfig, Stage

RUN_AS_USER = 10001  # any non-root uid; pinned so runAsNonRoot holds whatever USER the image sets
TMP_MOUNT = "/tmp"
SHUTDOWN_SECONDS = 30  # after the drain, the app's own graceful shutdown budget
# OpenFeature flagd providers read flags from a local file with these settings (provider spec,
# https://flagd.dev/reference/specifications/providers/: FLAGD_RESOLVER defaults to `rpc`, which
# dials localhost:8013 and never reads the file; `in-process` plus an offline source path makes
# the Python, Java and Go providers use their file resolver and watch the file for changes).
FLAGD_RESOLVER = "in-process"


ISTIO_PROXY_CONFIG = "proxy.istio.io/config"
PROXY_DRAIN_MARGIN = 5  # seconds the sidecar outlives the app's drain, for responses in flight


def proxy_drain_seconds(routing: RoutingConfig) -> int:
    return routing.drain_seconds + PROXY_DRAIN_MARGIN


def object_labels(service: ServiceConfig) -> dict[str, str]:
    return {
        "app": service.name,
        "app.kubernetes.io/name": service.name,
        "app.kubernetes.io/part-of": "genesis-rollout",
        "app.kubernetes.io/managed-by": "pulumi",
    }


def selector_labels(service: ServiceConfig, track: str) -> dict[str, str]:
    return {"app": service.name, "track": track}


def image_of(service: ServiceConfig, track: str):
    return service.stable if track == "stable" else service.canary


def pod_labels(service: ServiceConfig, track: str) -> dict[str, str]:
    """Constant per track across stages (a label change would restart the pods)."""
    version = image_of(service, track).version
    return {
        **selector_labels(service, track),
        "version": version,
        "app.kubernetes.io/name": service.name,
        "app.kubernetes.io/instance": f"{service.name}-{track}",
        "app.kubernetes.io/version": version,
        "app.kubernetes.io/component": track,
        "app.kubernetes.io/part-of": "genesis-rollout",
        "app.kubernetes.io/managed-by": "pulumi",
    }


def max_unavailable(service: ServiceConfig, replicas: int) -> str | int:
    """The PDB budget of a track running `replicas` pods. A percentage rounds up (10% of 1 pod
    allows evicting it), so a track down to one pod (the replica-ratio canary at a small share;
    weighted routers never run a canary below MIN_CANARY_PODS) keeps it: a node drain waits for
    the next stage change instead of sending that track's traffic to no pod (docs/stack.md)."""
    return 0 if replicas == 1 else service.max_unavailable


def track_name(service: ServiceConfig, track: str) -> str:
    return f"{service.name}-{track}"


def flags_file(service: ServiceConfig) -> str:
    return f"{service.flags_mount_path}/{FLAGS_FILE}"


def hardened_container(service: ServiceConfig, track: str, routing: RoutingConfig) -> k8s.core.v1.ContainerArgs:
    image = image_of(service, track)
    quantities = service.resources
    http_get = k8s.core.v1.HTTPGetActionArgs
    return k8s.core.v1.ContainerArgs(
        name=service.name,
        image=image.image,
        image_pull_policy="IfNotPresent",
        ports=[k8s.core.v1.ContainerPortArgs(name="http", container_port=service.port, protocol="TCP")],
        env=[
            # constant per track: the app tags requests and metrics with them
            k8s.core.v1.EnvVarArgs(name="GENESIS_TRACK", value=track),
            k8s.core.v1.EnvVarArgs(name="GENESIS_VERSION", value=image.version),
            k8s.core.v1.EnvVarArgs(name="FLAGD_RESOLVER", value=FLAGD_RESOLVER),
            k8s.core.v1.EnvVarArgs(name="FLAGD_OFFLINE_FLAG_SOURCE_PATH", value=flags_file(service)),
        ],
        resources=k8s.core.v1.ResourceRequirementsArgs(
            requests={"cpu": quantities.requests.cpu, "memory": quantities.requests.memory},
            limits={"cpu": quantities.limits.cpu, "memory": quantities.limits.memory},
        ),
        # liveness and readiness start only once the app has started (up to 2 minutes)
        startup_probe=k8s.core.v1.ProbeArgs(
            http_get=http_get(path=service.probes.liveness_path, port="http"),
            period_seconds=5,
            timeout_seconds=2,
            failure_threshold=24,
        ),
        readiness_probe=k8s.core.v1.ProbeArgs(
            http_get=http_get(path=service.probes.readiness_path, port="http"),
            period_seconds=5,
            timeout_seconds=2,
            failure_threshold=3,
        ),
        liveness_probe=k8s.core.v1.ProbeArgs(
            http_get=http_get(path=service.probes.liveness_path, port="http"),
            period_seconds=10,
            timeout_seconds=2,
            failure_threshold=3,
        ),
        # a stopping pod keeps serving while the routers and endpoints let go of it (no shell needed)
        lifecycle=k8s.core.v1.LifecycleArgs(
            pre_stop=k8s.core.v1.LifecycleHandlerArgs(
                sleep=k8s.core.v1.SleepActionArgs(seconds=routing.drain_seconds)
            )
        )
        if routing.drain_seconds
        else None,
        security_context=k8s.core.v1.SecurityContextArgs(
            run_as_non_root=True,
            read_only_root_filesystem=True,
            allow_privilege_escalation=False,
            capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
            seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
        ),
        volume_mounts=[
            k8s.core.v1.VolumeMountArgs(name="tmp", mount_path=TMP_MOUNT),
            # the whole directory, not subPath: subPath mounts never see ConfigMap updates
            k8s.core.v1.VolumeMountArgs(name="flags", mount_path=service.flags_mount_path, read_only=True),
        ],
    )


# ServiceConfig fields pod_template does not read: the other track's image, the replica count, the
# PDB budget and how the judge reads the app's error gauge (changing them rolls no canary pod)
NOT_IN_POD_TEMPLATE = {"stable", "replicas", "max_unavailable", "error_gauge_window"}


def canary_template_id(service: ServiceConfig, routing: RoutingConfig) -> str:
    """A short hash of what the canary's pod template is built from (its image, resources,
    probes, port..., and the routing's drain: preStop sleep, grace period, sidecar drain; not the
    stable track's, not the stage's): equal while the canary's pods stay the same pods
    (tests/components/test_components.py holds it to the rendered template)."""
    shaped = {
        "service": service.model_dump(mode="json", exclude=NOT_IN_POD_TEMPLATE),
        "drain_seconds": routing.drain_seconds,
    }
    return hashlib.sha256(json.dumps(shaped, sort_keys=True).encode()).hexdigest()[:16]


def pod_template(
    service: ServiceConfig, track: str, flags_config_map: str, routing: RoutingConfig
) -> k8s.core.v1.PodTemplateSpecArgs:
    """The pod template of one track. Takes no stage input on purpose: it must not vary by stage."""
    selector = selector_labels(service, track)
    spread = [
        k8s.core.v1.TopologySpreadConstraintArgs(
            max_skew=1,
            topology_key=key,
            when_unsatisfiable="ScheduleAnyway",
            label_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector),
            match_label_keys=["pod-template-hash"],
        )
        for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
    ]
    return k8s.core.v1.PodTemplateSpecArgs(
        metadata=k8s.meta.v1.ObjectMetaArgs(
            labels=pod_labels(service, track),
            annotations={
                # for annotation-based scrape configs; the ServiceMonitor uses the `http` port
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(service.port),
                "prometheus.io/path": service.metrics_path,
                # an Istio sidecar drains for terminationDrainDuration (5 s by default) when the pod
                # stops, independently of the app's preStop sleep: keep it serving as long as the app
                # (istio.io ProxyConfig.terminationDrainDuration via the proxy.istio.io/config pod
                # annotation). Set with every router so the pod template stays router-independent;
                # without a sidecar nothing reads it.
                ISTIO_PROXY_CONFIG: json.dumps({"terminationDrainDuration": f"{proxy_drain_seconds(routing)}s"}),
            },
        ),
        spec=k8s.core.v1.PodSpecArgs(
            automount_service_account_token=False,
            enable_service_links=False,
            termination_grace_period_seconds=routing.drain_seconds + SHUTDOWN_SECONDS,
            security_context=k8s.core.v1.PodSecurityContextArgs(
                run_as_non_root=True,
                run_as_user=RUN_AS_USER,
                run_as_group=RUN_AS_USER,
                fs_group=RUN_AS_USER,
                seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
            ),
            topology_spread_constraints=spread,
            containers=[hardened_container(service, track, routing)],
            volumes=[
                k8s.core.v1.VolumeArgs(
                    name="tmp", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(size_limit="64Mi")
                ),
                k8s.core.v1.VolumeArgs(
                    name="flags",
                    config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(name=flags_config_map),
                ),
            ],
        ),
    )


class WeightedService(pulumi.ComponentResource):
    """Stable and canary tracks of one service with `stage.weight` percent of traffic on canary."""

    flags: dict[str, FeatureFlagSet]
    deployments: dict[str, k8s.apps.v1.Deployment]
    services: dict[str, k8s.core.v1.Service]
    routes: dict[str, pulumi.CustomResource]
    pdbs: dict[str, k8s.policy.v1.PodDisruptionBudget]
    router: Router
    split: Split
    canary_template: str

    def __init__(
        self,
        name: str,
        service: ServiceConfig,
        stage: Stage,
        stable_flags: FeatureFlags,
        routing: RoutingConfig,
        provider: pulumi.ProviderResource,
        path_prefix: str = "/",
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("genesis:rollout:WeightedService", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        labels = object_labels(service)
        self.service = service
        self.canary_template = canary_template_id(service, routing)
        self.router = router_for(routing.router)
        self.split = self.router.split(service.replicas, stage.weight)

        track_flags = {"stable": stable_flags, "canary": stage.flags}
        self.flags = {
            track: FeatureFlagSet(
                f"{name}-{track}-flags", service.name, track, service.namespace, track_flags[track],
                labels, provider, opts=pulumi.ResourceOptions(parent=self),
            )
            for track in TRACKS
        }
        self.services = {track: self._track_service(name, track, labels, child) for track in TRACKS}
        target = RouteTarget(
            service=service,
            routing=routing,
            labels=labels,
            track_services={track: track_name(service, track) for track in TRACKS},
            path_prefix=path_prefix,
        )
        self.deployments = {}
        if self.router.weighted and stage.weight == 0:
            # the rollback: the weights move away from the canary before it scales down
            self.routes = self.router.sync(target, self.split, child)
            self._deployment(name, "stable", labels, routing, child)
            self._deployment(name, "canary", labels, routing, child, after=self.router.weight_objects(self.routes))
        elif self.router.weighted:
            # a promotion: the canary has its ready pods before the weights move to it
            for track in TRACKS:
                self._deployment(name, track, labels, routing, child)
            after = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=list(self.deployments.values())))
            self.routes = self.router.sync(target, self.split, after)
        else:
            # traffic follows ready pods: the track gaining pods scales before the other shrinks
            gaining, losing = ("stable", "canary") if stage.weight == 0 else ("canary", "stable")
            self._deployment(name, gaining, labels, routing, child)
            self._deployment(name, losing, labels, routing, child, after=[self.deployments[gaining]])
            self.routes = self.router.sync(target, self.split, child)

        self.pdbs = {
            track: k8s.policy.v1.PodDisruptionBudget(
                f"{name}-{track}-pdb",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=track_name(service, track), namespace=service.namespace, labels=labels
                ),
                spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                    # per track, so an unready canary pod never blocks draining a stable pod's node
                    max_unavailable=max_unavailable(service, self.split.replicas(track)),
                    unhealthy_pod_eviction_policy="AlwaysAllow",
                    selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector_labels(service, track)),
                ),
                opts=child,
            )
            for track in TRACKS
        }
        self.register_outputs({"split": self.summary()})

    def _track_service(self, name: str, track: str, labels: dict[str, str], opts: pulumi.ResourceOptions):
        service = self.service
        return k8s.core.v1.Service(
            f"{name}-{track}-service",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=track_name(service, track), namespace=service.namespace,
                labels={**labels, **pod_labels(service, track)},
            ),
            spec=k8s.core.v1.ServiceSpecArgs(
                type="ClusterIP",
                selector=selector_labels(service, track),
                ports=[k8s.core.v1.ServicePortArgs(name="http", port=service.port, target_port="http", protocol="TCP")],
            ),
            opts=opts,
        )

    def _deployment(
        self,
        name: str,
        track: str,
        labels: dict[str, str],
        routing: RoutingConfig,
        opts: pulumi.ResourceOptions,
        after: list[Any] | None = None,
    ) -> None:
        service = self.service
        # the pods mount their flags file: it exists before they start
        depends = [self.flags[track].config_map, *(after or [])]
        self.deployments[track] = k8s.apps.v1.Deployment(
            f"{name}-{track}-deployment",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=track_name(service, track),
                namespace=service.namespace,
                labels={**labels, **pod_labels(service, track)},
            ),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=self.split.replicas(track),
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector_labels(service, track)),
                revision_history_limit=5,
                min_ready_seconds=5,
                progress_deadline_seconds=600,
                strategy=k8s.apps.v1.DeploymentStrategyArgs(
                    type="RollingUpdate",
                    rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(max_surge="25%", max_unavailable=0),
                ),
                template=pod_template(service, track, self.flags[track].config_map_name, routing),
            ),
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=depends)),
        )

    def summary(self) -> dict:
        """Plain values for the stack exports (register_outputs alone is not visible under mocks)."""
        return {
            "namespace": self.service.namespace,
            "router": self.router.name,
            "routerExact": self.router.exact,
            "stableImage": self.service.stable.image,
            "canaryImage": self.service.canary.image,
            # what shapes the canary's pods besides the stage: a change restarts the bot's hold
            "canaryTemplate": self.canary_template,
            "stableReplicas": self.split.stable_replicas,
            "canaryReplicas": self.split.canary_replicas,
            "routeWeights": {"stable": self.split.stable_weight, "canary": self.split.canary_weight},
            "flagsConfigMaps": {track: flags.config_map_name for track, flags in self.flags.items()},
            # what a phased stage change targets (rollout.release.transition): `pulumi up --target`
            "resources": {
                "deployments": {track: d.urn for track, d in self.deployments.items()},
                "routing": [r.urn for r in self.router.weight_objects(self.routes)],
                "flags": {track: f.config_map.urn for track, f in self.flags.items()},
            },
        }
