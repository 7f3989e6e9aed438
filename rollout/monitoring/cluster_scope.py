"""The cluster-scoped objects install mode creates, and so the cluster-scoped rights whoever runs
`pulumi up` needs beyond `cluster.namespaces` (docs/stack.md, "Cluster-scoped rights"; the
in-cluster bot's RBAC reads this list). Everything else the program manages is namespaced.

From kube-prometheus-stack 79.5.0 with the values of components/monitoring.py (hooks, webhooks,
kube-system exporters and node-exporter off), read in github:prometheus-community/helm-charts at
tag kube-prometheus-stack-79.5.0; the subcharts' versions are those its Chart.yaml pins.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClusterScopedRight:
    api_group: str
    resource: str
    objects: str  # which objects, `<release>` = monitoring.releaseName
    why: str
    source: str  # the chart template that renders them


# Creating a ClusterRole that grants rights needs those rights or the `escalate` verb; binding it
# needs `bind` (Kubernetes RBAC privilege-escalation prevention).
VERBS = ("get", "list", "watch", "create", "update", "patch", "delete")
RBAC_EXTRA_VERBS = ("escalate", "bind")

# The ClusterRoles the chart creates for its release, `<release>-<suffix>`: the operator, Prometheus,
# kube-state-metrics, Grafana's sidecar. The bot may change, delete, escalate and bind only these.
CHART_CLUSTER_ROLES = ("operator", "prometheus", "kube-state-metrics", "grafana-clusterrole")


def chart_cluster_role_names(release_name: str) -> list[str]:
    return [f"{release_name}-{suffix}" for suffix in CHART_CLUSTER_ROLES]


CLUSTER_SCOPED_RIGHTS: tuple[ClusterScopedRight, ...] = (
    ClusterScopedRight(
        "apiextensions.k8s.io", "customresourcedefinitions",
        "the 10 monitoring.coreos.com CRDs (ServiceMonitor, PrometheusRule, AlertmanagerConfig, ...)",
        "the Operator's API: our ServiceMonitors, PrometheusRule and AlertmanagerConfigs are of these kinds",
        "charts/crds/crds/crd-*.yaml (crds.enabled)",
    ),
    ClusterScopedRight(
        "rbac.authorization.k8s.io", "clusterroles",
        ", ".join(chart_cluster_role_names("<release>")),
        "the Operator watches its CRs in every namespace; Prometheus discovers the genesis Services and pods; "
        "kube-state-metrics reads Deployments (the canary availability gate); Grafana's sidecar reads dashboard ConfigMaps",
        "templates/prometheus-operator/clusterrole.yaml, templates/prometheus/clusterrole.yaml, "
        "subcharts kube-state-metrics 6.4.1 and grafana 10.1.4",
    ),
    ClusterScopedRight(
        "rbac.authorization.k8s.io", "clusterrolebindings",
        "the bindings of those ClusterRoles to the chart's ServiceAccounts in monitoring.namespace",
        "as above",
        "templates/prometheus-operator/clusterrolebinding.yaml, templates/prometheus/clusterrolebinding.yaml, subcharts",
    ),
)
