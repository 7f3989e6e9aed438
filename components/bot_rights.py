"""What the in-cluster release bot may do in the cluster: exactly what the program it runs manages.

The bot runs `pulumi up` of this program, so it needs write access to every kind the program
declares, in the namespace where it declares it, and nothing else:
- `managed_kinds`: (API group, resource) per namespace, derived from the same config the program
  reads (services and their router, monitoring mode, the bot's own objects). The invariant test
  (tests/components/test_release_bot.py) renders every stage and router and checks that these
  are exactly the kinds registered per namespace, so a new kind in the program fails the test
  until it is granted here;
- `AWAIT_READS`: read-only kinds pulumi-kubernetes watches while it waits for a Deployment or a
  Service to be ready (pulumi/pulumi-kubernetes v4.32.0, provider/pkg/await/deployment.go
  subscribes to deployments, replicasets, pods and persistentvolumeclaims; service.go to
  endpoints; watchers.go to events for its messages);
- the Lease of its leader election, in its own namespace;
- `install_cluster_rules`: the cluster-scoped rights install mode needs for kube-prometheus-stack,
  derived from the chart's own list (rollout.monitoring.cluster_scope, docs/stack.md
  "Cluster-scoped rights").

Never `*`, never cluster-admin. Its own ServiceAccount, Roles and bindings are not in its rights:
Kubernetes refuses to let a subject grant rights it does not hold (RBAC escalation check), so
changing the bot's rights is a person's `pulumi up` (docs/bot.md, bootstrap and upgrade).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from rollout.model import ProjectSettings
from rollout.monitoring.cluster_scope import (
    CLUSTER_SCOPED_RIGHTS,
    RBAC_EXTRA_VERBS,
    VERBS,
    chart_cluster_role_names,
)

WRITE = list(VERBS)
READ = ["get", "list", "watch"]
RBAC = "rbac.authorization.k8s.io"
UNNAMED = ("get", "list", "watch", "create")  # RBAC cannot restrict list, watch or create by name

ROUTER_KINDS: dict[str, list[tuple[str, str]]] = {
    "gateway-api": [("gateway.networking.k8s.io", "httproutes")],
    "istio": [("networking.istio.io", "virtualservices"), ("networking.istio.io", "destinationrules")],
    "replica-ratio": [],
}
SERVICE_KINDS = [("apps", "deployments"), ("", "services"), ("", "configmaps"), ("policy", "poddisruptionbudgets"),
                 ("monitoring.coreos.com", "servicemonitors")]
AWAIT_READS = [("", "pods"), ("apps", "replicasets"), ("", "persistentvolumeclaims"), ("", "endpoints"), ("", "events")]
# the kube-prometheus-stack release's namespaced objects (install mode), written by the Helm chart
# the program declares; opaque under the mock runtime, so listed by hand from the chart's templates
CHART_NAMESPACED = [
    ("", "configmaps"), ("", "secrets"), ("", "services"), ("", "serviceaccounts"),
    ("apps", "deployments"), ("apps", "daemonsets"),
    ("rbac.authorization.k8s.io", "roles"), ("rbac.authorization.k8s.io", "rolebindings"),
    ("monitoring.coreos.com", "prometheuses"), ("monitoring.coreos.com", "alertmanagers"),
    ("monitoring.coreos.com", "servicemonitors"), ("monitoring.coreos.com", "prometheusrules"),
]
Kinds = dict[str, set[tuple[str, str]]]


def managed_kinds(project: ProjectSettings) -> Kinds:
    """Every (group, resource) the program writes, per namespace (outside the Helm chart)."""
    kinds: Kinds = defaultdict(set)
    for service in project.services:
        kinds[service.namespace] |= {*SERVICE_KINDS, *ROUTER_KINDS[project.routing.router]}
        if project.monitoring.mode == "existing":
            kinds[service.namespace].add(("monitoring.coreos.com", "alertmanagerconfigs"))
    monitoring = project.monitoring
    kinds[monitoring.namespace] |= {("monitoring.coreos.com", "prometheusrules")}
    if monitoring.grafana.url is None:  # the dashboard ConfigMap for Grafana's sidecar
        kinds[monitoring.namespace].add(("", "configmaps"))
    if project.bot.mode == "cluster":  # its own Deployment, kubeconfig ConfigMap and PodMonitor
        kinds[project.bot.namespace] |= {("apps", "deployments"), ("", "configmaps"), ("monitoring.coreos.com", "podmonitors")}
    return dict(kinds)


def writable_kinds(project: ProjectSettings) -> Kinds:
    """managed_kinds plus, in install mode, the chart's namespaced objects."""
    kinds = {ns: set(found) for ns, found in managed_kinds(project).items()}
    if project.monitoring.mode == "install":
        kinds.setdefault(project.monitoring.namespace, set()).update(CHART_NAMESPACED)
    return kinds


def _rules(kinds: set[tuple[str, str]], verbs: list[str]) -> list[dict[str, Any]]:
    by_group: dict[str, list[str]] = defaultdict(list)
    for group, resource in sorted(kinds):
        by_group[group].append(resource)
    return [{"apiGroups": [group], "resources": resources, "verbs": verbs} for group, resources in sorted(by_group.items())]


def namespace_rules(project: ProjectSettings, namespace: str, lease_name: str) -> list[dict[str, Any]]:
    """The Role of one namespace of cluster.namespaces."""
    rules = _rules(writable_kinds(project).get(namespace, set()), WRITE)
    rules += _rules(set(AWAIT_READS), READ)
    if namespace == project.bot.namespace:
        # leader election: create cannot be limited by name (the name is not known before), the rest can
        rules.append({"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]})
        rules.append({"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                      "resourceNames": [lease_name], "verbs": ["get", "update"]})
    return rules


def install_cluster_rules(project: ProjectSettings) -> list[dict[str, Any]]:
    """Cluster-scoped rights for install mode, derived from the chart's list
    (rollout.monitoring.cluster_scope.CLUSTER_SCOPED_RIGHTS, docs/stack.md "Cluster-scoped rights"):
    CRDs never deleted (that would delete every object of the kind); ClusterRoles and bindings
    created and read freely (RBAC cannot limit `create` by name), changed, deleted, escalated and
    bound only under the chart's own names."""
    names = chart_cluster_role_names(project.monitoring.release_name)
    rules: list[dict[str, Any]] = []
    for right in CLUSTER_SCOPED_RIGHTS:
        base = {"apiGroups": [right.api_group], "resources": [right.resource]}
        if right.api_group != RBAC:
            rules.append({**base, "verbs": [v for v in VERBS if v != "delete"]})
            continue
        extra = list(RBAC_EXTRA_VERBS) if right.resource == "clusterroles" else []
        rules.append({**base, "verbs": [v for v in VERBS if v in UNNAMED]})
        rules.append({**base, "resourceNames": names, "verbs": [v for v in VERBS if v not in UNNAMED] + extra})
    return rules
