"""One service shipped progressively: a stable and a canary track and the traffic split between them.

Children (all parented to the component, all with explicit `metadata.name` so Pulumi updates
them in place instead of replacing them under a new autonamed suffix):
- `<app>-flags` ConfigMap with the stage's flagd flags (FeatureFlagSet), mounted by both tracks;
- Deployments `<app>-stable` and `<app>-canary` (pod labels app, track, version);
- Services `<app>-stable` and `<app>-canary`, port `http` (also where Prometheus scrapes);
- the router's objects (HTTPRoute, or VirtualService + DestinationRule, or a Service);
- a PodDisruptionBudget over both tracks.

Only Deployment replica counts, route weights and the flags file depend on the stage. A pod
template never does, so promotion and rollback never restart the stable pods.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from components.feature_flags import FLAGS_FILE, FeatureFlagSet
from components.routers import Router, RouteTarget, Split, router_for
from components.routers.base import TRACKS
from rollout.model import RoutingConfig, ServiceConfig, Stage

RUN_AS_USER = 10001  # any non-root uid; pinned so runAsNonRoot holds whatever USER the image sets
TMP_MOUNT = "/tmp"


def object_labels(service: ServiceConfig) -> dict[str, str]:
    return {
        "app": service.name,
        "app.kubernetes.io/name": service.name,
        "app.kubernetes.io/part-of": "genesis-rollout",
        "app.kubernetes.io/managed-by": "pulumi",
    }


def selector_labels(service: ServiceConfig, track: str) -> dict[str, str]:
    return {"app": service.name, "track": track}


def pod_labels(service: ServiceConfig, track: str) -> dict[str, str]:
    image = service.stable if track == "stable" else service.canary
    return {**selector_labels(service, track), "version": image.version}


def track_name(service: ServiceConfig, track: str) -> str:
    return f"{service.name}-{track}"


def hardened_container(service: ServiceConfig, track: str) -> k8s.core.v1.ContainerArgs:
    image = service.stable if track == "stable" else service.canary
    quantities = service.resources
    return k8s.core.v1.ContainerArgs(
        name=service.name,
        image=image.image,
        image_pull_policy="IfNotPresent",
        ports=[k8s.core.v1.ContainerPortArgs(name="http", container_port=service.port, protocol="TCP")],
        env=[
            # constant per track: the app tags requests and metrics with them
            k8s.core.v1.EnvVarArgs(name="GENESIS_TRACK", value=track),
            k8s.core.v1.EnvVarArgs(name="GENESIS_VERSION", value=image.version),
            # OpenFeature flagd provider, in-process offline mode: watches this file
            k8s.core.v1.EnvVarArgs(
                name="FLAGD_OFFLINE_FLAG_SOURCE_PATH",
                value=f"{service.flags_mount_path}/{FLAGS_FILE}",
            ),
        ],
        resources=k8s.core.v1.ResourceRequirementsArgs(
            requests={"cpu": quantities.requests.cpu, "memory": quantities.requests.memory},
            limits={"cpu": quantities.limits.cpu, "memory": quantities.limits.memory},
        ),
        readiness_probe=k8s.core.v1.ProbeArgs(
            http_get=k8s.core.v1.HTTPGetActionArgs(path=service.probes.readiness_path, port="http"),
            period_seconds=5,
            timeout_seconds=2,
            failure_threshold=3,
        ),
        liveness_probe=k8s.core.v1.ProbeArgs(
            http_get=k8s.core.v1.HTTPGetActionArgs(path=service.probes.liveness_path, port="http"),
            initial_delay_seconds=10,
            period_seconds=10,
            timeout_seconds=2,
            failure_threshold=3,
        ),
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


def pod_template(
    service: ServiceConfig, track: str, flags_config_map: str
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
            },
        ),
        spec=k8s.core.v1.PodSpecArgs(
            automount_service_account_token=False,
            enable_service_links=False,
            termination_grace_period_seconds=30,
            security_context=k8s.core.v1.PodSecurityContextArgs(
                run_as_non_root=True,
                run_as_user=RUN_AS_USER,
                run_as_group=RUN_AS_USER,
                fs_group=RUN_AS_USER,
                seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
            ),
            topology_spread_constraints=spread,
            containers=[hardened_container(service, track)],
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

    flags: FeatureFlagSet
    deployments: dict[str, k8s.apps.v1.Deployment]
    services: dict[str, k8s.core.v1.Service]
    routes: dict[str, pulumi.CustomResource]
    pdb: k8s.policy.v1.PodDisruptionBudget
    router: Router
    split: Split

    def __init__(
        self,
        name: str,
        service: ServiceConfig,
        stage: Stage,
        routing: RoutingConfig,
        path_prefix: str = "/",
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("genesis:rollout:WeightedService", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        labels = object_labels(service)
        self.service = service
        self.router = router_for(routing.router)
        self.split = self.router.split(service.replicas, stage.weight)

        self.flags = FeatureFlagSet(
            f"{name}-flags", service.name, service.namespace, stage.flags, labels, opts=child
        )
        replicas = {"stable": self.split.stable_replicas, "canary": self.split.canary_replicas}
        self.deployments = {}
        self.services = {}
        for track in TRACKS:
            metadata = k8s.meta.v1.ObjectMetaArgs(
                name=track_name(service, track),
                namespace=service.namespace,
                labels={**labels, **pod_labels(service, track)},
            )
            self.deployments[track] = k8s.apps.v1.Deployment(
                f"{name}-{track}-deployment",
                metadata=metadata,
                spec=k8s.apps.v1.DeploymentSpecArgs(
                    replicas=replicas[track],
                    selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector_labels(service, track)),
                    revision_history_limit=5,
                    strategy=k8s.apps.v1.DeploymentStrategyArgs(
                        type="RollingUpdate",
                        rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(
                            max_surge="25%", max_unavailable=0
                        ),
                    ),
                    template=pod_template(service, track, self.flags.config_map_name),
                ),
                opts=child,
            )
            self.services[track] = k8s.core.v1.Service(
                f"{name}-{track}-service",
                metadata=metadata,
                spec=k8s.core.v1.ServiceSpecArgs(
                    type="ClusterIP",
                    selector=selector_labels(service, track),
                    ports=[
                        k8s.core.v1.ServicePortArgs(
                            name="http", port=service.port, target_port="http", protocol="TCP"
                        )
                    ],
                ),
                opts=child,
            )

        target = RouteTarget(
            service=service,
            routing=routing,
            labels=labels,
            track_services={track: track_name(service, track) for track in TRACKS},
            path_prefix=path_prefix,
        )
        self.routes = self.router.sync(target, self.split, self)

        self.pdb = k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=service.name, namespace=service.namespace, labels=labels),
            spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                # one pod at a time across both tracks, whatever the split
                max_unavailable=1,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels={"app": service.name}),
            ),
            opts=child,
        )
        self.register_outputs({"split": self.summary()})

    def summary(self) -> dict:
        """Plain values for the stack exports (register_outputs alone is not visible under mocks)."""
        return {
            "namespace": self.service.namespace,
            "router": self.router.name,
            "routerExact": self.router.exact,
            "stableImage": self.service.stable.image,
            "canaryImage": self.service.canary.image,
            "stableReplicas": self.split.stable_replicas,
            "canaryReplicas": self.split.canary_replicas,
            "routeWeights": {"stable": self.split.stable_weight, "canary": self.split.canary_weight},
            "flagsConfigMap": self.flags.config_map_name,
        }
