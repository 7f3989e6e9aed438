"""Monitoring as code: kube-prometheus-stack (or an existing one) plus our monitors, rules, dashboards.

MonitoringConfig.mode:
- "install": kube-prometheus-stack as a Helm chart pinned to MonitoringConfig.chart_version,
  values generated from config (values_for below);
- "existing": nothing is installed; the platform team's stack picks up our objects, which carry
  its release label.

Either way the children are (all parented to the component):
- a ServiceMonitor per service that scrapes both track Services and copies the pod labels
  app, track and version onto every series (the recording rules group by them);
- a PrometheusRule holding the rule file of rollout.monitoring.alert_rules for this stage;
- the release dashboard: a ConfigMap labelled grafana_dashboard="1" for Grafana's sidecar, or,
  when grafana.url names an external Grafana, a Folder and a Dashboard through the Grafana
  provider (auth from the Pulumi secret config `grafana:auth` or the GRAFANA_AUTH env variable).

The monitoring namespace and the Secrets (Grafana admin, Alertmanager receivers) are created out
of band, with the secrets: Pulumi only references them by name, so no secret enters its state.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumiverse_grafana as grafana

from rollout.model import MonitoringConfig, ServiceConfig, StackConfig, format_duration
from rollout.monitoring.alert_rules import rule_groups
from rollout.monitoring.alertmanager_config import (
    CRD_API_VERSION,
    alertmanager_config_spec,
    render_alertmanager_config,
    secret_names,
)
from rollout.monitoring.chart import read_lock
from rollout.monitoring.dashboard import build_dashboard, dashboard_json

CHART = "kube-prometheus-stack"
MONITORING_API = "monitoring.coreos.com/v1"
POD_TARGET_LABELS = ["app", "track", "version"]
TRACKS = ["stable", "canary"]
DASHBOARD_LABEL = {"grafana_dashboard": "1"}
FOLDER_ANNOTATION = "grafana_folder"
GRAFANA_ADMIN_KEYS = {"userKey": "admin-user", "passwordKey": "admin-password"}
ALERTMANAGER_STORAGE = "5Gi"

# Chart defaults set no requests or limits; these fit a single release's series count.
COMPONENT_RESOURCES: dict[str, dict[str, dict[str, str]]] = {
    "prometheus": {"requests": {"cpu": "500m", "memory": "2Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}},
    "alertmanager": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"cpu": "200m", "memory": "256Mi"}},
    "grafana": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "500m", "memory": "512Mi"}},
    "operator": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
}


def common_labels(monitoring: MonitoringConfig) -> dict[str, str]:
    # `release` is what kube-prometheus-stack's default selectors match on, so an existing
    # install picks our objects up without changing its values.
    return {
        "release": monitoring.release_name,
        "app.kubernetes.io/part-of": "genesis-rollout",
        "app.kubernetes.io/managed-by": "pulumi",
    }


# --------------------------------------------------------------------------- chart values


def _volume_claim(size: str, storage_class: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if storage_class:
        spec["storageClassName"] = storage_class
    return {"volumeClaimTemplate": {"spec": spec}}


# What the release does not need, off (kube-prometheus-stack 79.5.0 values.yaml and templates,
# github:prometheus-community/helm-charts tag kube-prometheus-stack-79.5.0):
NO_HOOKS = {
    # `kubernetes:helm.sh/v4:Chart` never runs Helm hooks (pulumi-kubernetes
    # provider/pkg/provider/helm/v4/chart.go: `cmd.DisableHooks = true`). The chart's only hooks are
    # the admission webhook's certificate Jobs (templates/prometheus-operator/admission-webhooks/
    # job-patch/*.yaml, gated by admissionWebhooks.enabled and .patch.enabled) and the CRD upgrade
    # Job (charts/crds/templates/upgrade/*.yaml, crds.upgradeJob.enabled, false by default). The
    # Operator Deployment mounts the `<fullname>-admission` Secret those Jobs create whenever
    # prometheusOperator.tls.enabled (default true; templates/prometheus-operator/deployment.yaml,
    # the `tls-secret` volume); so does the webhook Deployment with admissionWebhooks.deployment.
    # tls.enabled (its Deployment is off by default). All off: nothing waits for a hook.
    "tls": {"enabled": False},
    "admissionWebhooks": {
        "enabled": False,
        "patch": {"enabled": False},
        "certManager": {"enabled": False},
        "deployment": {"enabled": False, "tls": {"enabled": False}},
    },
    # the Operator would create and maintain a kubelet Service + Endpoints in kube-system
    "kubeletService": {"enabled": False},
}
# ServiceMonitors, Services and Endpoints for cluster components, most of them in kube-system
# (templates/exporters/*, all gated by kubernetesServiceMonitors.enabled), the node-exporter
# DaemonSet (host network, host PID, host paths) and the cluster's default alert rules (several
# alert on the absence of exactly those scrape jobs, so they would fire forever): not what a
# release needs. kube-state-metrics stays: the canary's availability gate reads it.
CLUSTER_COMPONENTS_OFF = {
    "kubernetesServiceMonitors": {"enabled": False},
    "kubeApiServer": {"enabled": False},
    "kubelet": {"enabled": False},
    "kubeControllerManager": {"enabled": False},
    "coreDns": {"enabled": False},
    "kubeDns": {"enabled": False},
    "kubeEtcd": {"enabled": False},
    "kubeScheduler": {"enabled": False},
    "kubeProxy": {"enabled": False},
    "nodeExporter": {"enabled": False},
    "windowsMonitoring": {"enabled": False},
    "defaultRules": {"create": False},
    "crds": {"enabled": True, "upgradeJob": {"enabled": False}},
    "kubeStateMetrics": {"enabled": True},
}


def values_for(monitoring: MonitoringConfig) -> dict[str, Any]:
    """kube-prometheus-stack values generated from MonitoringConfig."""
    interval = format_duration(monitoring.scrape_interval)
    external_grafana = monitoring.grafana.url is not None
    return {
        **CLUSTER_COMPONENTS_OFF,
        "prometheus": {
            "prometheusSpec": {
                "retention": format_duration(monitoring.retention),
                "scrapeInterval": interval,
                "evaluationInterval": interval,
                "storageSpec": _volume_claim(monitoring.storage_size, monitoring.storage_class),
                "resources": COMPONENT_RESOURCES["prometheus"],
                # select rules and monitors from every release and namespace, not only the
                # chart's own release label
                "ruleSelectorNilUsesHelmValues": False,
                "serviceMonitorSelectorNilUsesHelmValues": False,
                "podMonitorSelectorNilUsesHelmValues": False,
                "probeSelectorNilUsesHelmValues": False,
                "scrapeConfigSelectorNilUsesHelmValues": False,
            }
        },
        "alertmanager": {
            "config": render_alertmanager_config(monitoring),
            "alertmanagerSpec": {
                # mounted at /etc/alertmanager/secrets/<name>/<key>, where the config reads them
                "secrets": secret_names(monitoring),
                "resources": COMPONENT_RESOURCES["alertmanager"],
                "storage": _volume_claim(ALERTMANAGER_STORAGE, monitoring.storage_class),
            },
        },
        "grafana": {
            "enabled": not external_grafana,
            "admin": {"existingSecret": monitoring.grafana.admin_secret, **GRAFANA_ADMIN_KEYS},
            "resources": COMPONENT_RESOURCES["grafana"],
            "sidecar": {
                "dashboards": {
                    "enabled": True,
                    "label": "grafana_dashboard",
                    "labelValue": "1",
                    "searchNamespace": "ALL",
                    "folderAnnotation": FOLDER_ANNOTATION,
                    "provider": {"foldersFromFilesStructure": True},
                }
            },
        },
        "prometheusOperator": {"resources": COMPONENT_RESOURCES["operator"], **NO_HOOKS},
    }


# --------------------------------------------------------------------------- object specs


def service_monitor_spec(service: ServiceConfig, monitoring: MonitoringConfig) -> dict[str, Any]:
    """Scrape both track Services (the apex Service has no track label, so it is not scraped twice)."""
    return {
        "selector": {
            "matchLabels": {"app": service.name},
            "matchExpressions": [{"key": "track", "operator": "In", "values": list(TRACKS)}],
        },
        "namespaceSelector": {"matchNames": [service.namespace]},
        "podTargetLabels": list(POD_TARGET_LABELS),
        "endpoints": [
            {
                "port": "http",
                "path": service.metrics_path,
                "interval": format_duration(monitoring.scrape_interval),
                "scheme": "http",
            }
        ],
    }


def dashboards_for(config: StackConfig) -> dict[str, dict[str, Any]]:
    """{uid: dashboard JSON} for this stage."""
    board = build_dashboard(config.stage, config.project.stage_order, config.project.monitoring)
    return {board["uid"]: board}


class MonitoringStack(pulumi.ComponentResource):
    """kube-prometheus-stack (install mode) and the release's monitors, rules and dashboards."""

    chart: k8s.helm.v4.Chart | None
    service_monitors: dict[str, k8s.apiextensions.CustomResource]
    prometheus_rule: k8s.apiextensions.CustomResource
    alertmanager_configs: dict[str, k8s.apiextensions.CustomResource]
    dashboard_config_maps: dict[str, k8s.core.v1.ConfigMap]
    grafana_provider: grafana.Provider | None
    grafana_folder: grafana.oss.Folder | None
    grafana_dashboards: dict[str, grafana.oss.Dashboard]

    def __init__(
        self,
        name: str,
        config: StackConfig,
        provider: pulumi.ProviderResource,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("genesis:monitoring:MonitoringStack", name, None, opts)
        monitoring = config.project.monitoring
        labels = common_labels(monitoring)
        child = pulumi.ResourceOptions(parent=self, provider=provider)

        self.chart = None
        if monitoring.mode == "install":
            self.chart = k8s.helm.v4.Chart(
                f"{name}-{CHART}",
                # the vendored archive only (rollout.monitoring.chart): no chart repository is
                # asked, so a rollback needs nothing from the internet; its digest is checked
                # before the program registers anything (components/program.py)
                chart=str(read_lock().archive_of(monitoring.chart_version)),
                name=monitoring.release_name,
                namespace=monitoring.namespace,
                values=values_for(monitoring),
                # a provider-side component: its children take the provider from this map
                opts=pulumi.ResourceOptions(parent=self, providers={"kubernetes": provider}),
            )
        # our custom resources need the chart's CRDs first
        objects = (
            pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[self.chart]))
            if self.chart
            else child
        )

        self.service_monitors = {}
        for service in config.project.services:
            self.service_monitors[service.name] = k8s.apiextensions.CustomResource(
                f"{name}-{service.name}-servicemonitor",
                api_version=MONITORING_API,
                kind="ServiceMonitor",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=service.name, namespace=service.namespace, labels={**labels, "app": service.name}
                ),
                spec=service_monitor_spec(service, monitoring),
                opts=objects,
            )

        self.prometheus_rule = k8s.apiextensions.CustomResource(
            f"{name}-prometheusrule",
            api_version=MONITORING_API,
            kind="PrometheusRule",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name="genesis-rollout", namespace=monitoring.namespace, labels=labels
            ),
            spec=rule_groups(config.stage, monitoring, config.project.services),
            opts=objects,
        )

        # existing mode: the cluster's Alertmanager is not ours to configure; contribute our routes
        # and receivers as AlertmanagerConfigs, one per namespace our alerts carry (the operator
        # scopes each to alerts of its own namespace)
        self.alertmanager_configs = {}
        if monitoring.mode == "existing":
            for namespace in dict.fromkeys(s.namespace for s in config.project.services):
                self.alertmanager_configs[namespace] = k8s.apiextensions.CustomResource(
                    f"{name}-{namespace}-alertmanagerconfig",
                    api_version=CRD_API_VERSION,
                    kind="AlertmanagerConfig",
                    metadata=k8s.meta.v1.ObjectMetaArgs(name="genesis-rollout", namespace=namespace, labels=labels),
                    spec=alertmanager_config_spec(monitoring),
                    opts=child,
                )

        dashboards = dashboards_for(config)
        self.dashboard_config_maps = {}
        self.grafana_provider = None
        self.grafana_folder = None
        self.grafana_dashboards = {}
        if monitoring.grafana.url:
            self._external_grafana(name, monitoring, dashboards, config.stage.name)
        else:
            for uid, board in dashboards.items():
                self.dashboard_config_maps[uid] = k8s.core.v1.ConfigMap(
                    f"{name}-{uid}-dashboard",
                    metadata=k8s.meta.v1.ObjectMetaArgs(
                        name=f"{uid}-dashboard",
                        namespace=monitoring.namespace,
                        labels={**labels, **DASHBOARD_LABEL},
                        annotations={FOLDER_ANNOTATION: monitoring.grafana.folder},
                    ),
                    data={f"{uid}.json": dashboard_json(board)},
                    opts=child,
                )

        self.register_outputs({
            "service_monitors": list(self.service_monitors),
            "dashboards": list(dashboards),
        })

    def _external_grafana(
        self, name: str, monitoring: MonitoringConfig, dashboards: dict[str, dict[str, Any]], stage: str
    ) -> None:
        # Auth is a Pulumi secret (`pulumi config set --secret grafana:auth ...`); without it the
        # provider reads GRAFANA_AUTH from the environment. Never from a stage file.
        auth = pulumi.Config("grafana").get_secret("auth")
        self.grafana_provider = grafana.Provider(
            f"{name}-grafana", url=monitoring.grafana.url, auth=auth, opts=pulumi.ResourceOptions(parent=self)
        )
        on_grafana = pulumi.ResourceOptions(parent=self, provider=self.grafana_provider)
        self.grafana_folder = grafana.oss.Folder(
            f"{name}-folder", title=monitoring.grafana.folder, uid="genesis-rollout", opts=on_grafana
        )
        for uid, board in dashboards.items():
            self.grafana_dashboards[uid] = grafana.oss.Dashboard(
                f"{name}-{uid}-dashboard",
                config_json=json.dumps(board, sort_keys=True),
                folder=self.grafana_folder.uid,
                overwrite=True,
                message=f"genesis-rollout: thresholds of stage {stage}",
                opts=on_grafana,
            )
