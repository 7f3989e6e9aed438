"""MonitoringStack under the Pulumi SDK's mock runtime (rollout.review.mock_runtime).

Stand-ins, because the real things cannot run here: there is no Pulumi engine (the real SDK runs
the component under its own mocks and records each registration with its inputs), no Kubernetes
API server (the ServiceMonitor and PrometheusRule are validated offline with the schemas
@kubernetes-models/prometheus-operator generates from the operator's CRDs) and no Grafana.
Under mocks the Helm chart is one opaque registration: its inputs are what is asserted.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from pulumi.runtime.rpc import _special_secret_sig, _special_sig_key
from support.monitoring import ROOT, validate_k8s_objects

from components.monitoring import (
    CHART,
    COMPONENT_RESOURCES,
    POD_TARGET_LABELS,
    MonitoringStack,
)
from components.program import kubernetes_provider
from rollout.config import parse_stack_config, project_name
from rollout.model import StackConfig, format_duration
from rollout.monitoring.alert_rules import rule_groups
from rollout.monitoring.alertmanager_config import (
    alertmanager_config_spec,
    render_alertmanager_config,
)
from rollout.monitoring.dashboard import build_dashboard, dashboard_json
from rollout.review.mock_runtime import (
    RenderedStack,
    plain_numbers,
    run_program,
    values_for_stage,
)

NAME = "monitoring"
CHART_TYPE = "kubernetes:helm.sh/v4:Chart"
SERVICE_MONITOR = "kubernetes:monitoring.coreos.com/v1:ServiceMonitor"
PROMETHEUS_RULE = "kubernetes:monitoring.coreos.com/v1:PrometheusRule"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
NAMESPACE = project_name(ROOT)

SECOND_SERVICE = {
    "name": "genesis-worker",
    "namespace": "genesis-jobs",
    "port": 9000,
    "metricsPath": "/internal/metrics",
    "stable": {"image": "ghcr.io/genesis/worker:2.0.0", "version": "2.0.0"},
    "canary": {"image": "ghcr.io/genesis/worker:2.1.0", "version": "2.1.0"},
}


def render(values: dict[str, Any]) -> tuple[RenderedStack, StackConfig]:
    bare = {k: v for k, v in values.items() if ":" not in k}
    config = parse_stack_config(bare, NAMESPACE, "test values")
    stack = run_program(values, lambda: MonitoringStack(NAME, config, kubernetes_provider(config.project.cluster)))
    return stack, config


def with_monitoring(stage: str = "canary", **changes: Any) -> dict[str, Any]:
    values = copy.deepcopy(values_for_stage(ROOT, stage))
    values["monitoring"] = {**values["monitoring"], **changes}
    return values


def plain(value: Any) -> Any:
    """What a value looks like after the wire (JSON types, integral floats as ints)."""
    return plain_numbers(json.loads(json.dumps(value)))


@pytest.fixture(scope="module")
def installed() -> tuple[RenderedStack, StackConfig]:
    values = with_monitoring(retention="30d", storageSize="120Gi", storageClass="fast-ssd", chartVersion="80.1.2")
    values["services"] = values["services"] + [SECOND_SERVICE]
    values["cluster"] = {**values["cluster"], "namespaces": [*values["cluster"]["namespaces"], "genesis-jobs"]}
    return render(values)


@pytest.fixture(scope="module")
def existing() -> tuple[RenderedStack, StackConfig]:
    return render(with_monitoring(mode="existing"))


@pytest.fixture(scope="module")
def external_grafana() -> tuple[RenderedStack, StackConfig]:
    values = with_monitoring(grafana={"url": "https://grafana.example.com", "folder": "Genesis Releases"})
    values["grafana:auth"] = {"secure": "v1:not-a-real-ciphertext"}
    return render(values)


# --------------------------------------------------------------------------- install mode


def test_install_mode_registers_the_pinned_chart(installed):
    stack, config = installed
    monitoring = config.project.monitoring
    [chart] = stack.of_type(CHART_TYPE)
    # the vendored archive of the configured version, read from the repository's charts/
    assert monitoring.chart_version == "80.1.2"
    assert chart.inputs["chart"] == str(ROOT / "charts" / f"{CHART}-80.1.2.tgz")
    assert "repositoryOpts" not in chart.inputs and "version" not in chart.inputs
    assert chart.inputs["name"] == monitoring.release_name
    assert chart.inputs["namespace"] == monitoring.namespace


def test_chart_values_come_from_config(installed):
    stack, config = installed
    monitoring = config.project.monitoring
    values = stack.of_type(CHART_TYPE)[0].inputs["values"]
    spec = values["prometheus"]["prometheusSpec"]
    assert spec["retention"] == format_duration(monitoring.retention) == "30d"
    assert spec["scrapeInterval"] == format_duration(monitoring.scrape_interval)
    claim = spec["storageSpec"]["volumeClaimTemplate"]["spec"]
    assert claim["resources"]["requests"]["storage"] == "120Gi"
    assert claim["storageClassName"] == "fast-ssd"
    for selector in ("rule", "serviceMonitor", "podMonitor", "probe", "scrapeConfig"):
        assert spec[f"{selector}SelectorNilUsesHelmValues"] is False

    resources = {
        "prometheus": spec["resources"],
        "alertmanager": values["alertmanager"]["alertmanagerSpec"]["resources"],
        "grafana": values["grafana"]["resources"],
        "operator": values["prometheusOperator"]["resources"],
    }
    assert resources == COMPONENT_RESOURCES
    for quantities in resources.values():
        assert set(quantities) == {"requests", "limits"}

    grafana = values["grafana"]
    assert grafana["enabled"] is True
    assert grafana["admin"]["existingSecret"] == monitoring.grafana.admin_secret
    dashboards = grafana["sidecar"]["dashboards"]
    assert (dashboards["enabled"], dashboards["label"], dashboards["labelValue"]) == (True, "grafana_dashboard", "1")


def test_alertmanager_config_and_mounted_secrets(installed):
    stack, config = installed
    monitoring = config.project.monitoring
    alertmanager = stack.of_type(CHART_TYPE)[0].inputs["values"]["alertmanager"]
    assert alertmanager["config"] == plain(render_alertmanager_config(monitoring))
    alerting = monitoring.alerting
    refs = [alerting.email.password, alerting.slack.deployments.webhook, alerting.slack.incidents.webhook,
            alerting.pagerduty.routing_key]
    assert sorted(alertmanager["alertmanagerSpec"]["secrets"]) == sorted({r.name for r in refs})
    # every secret the config reads is a file inside a mounted Secret
    text = json.dumps(alertmanager["config"])
    for ref in refs:
        assert f"/etc/alertmanager/secrets/{ref.name}/{ref.key}" in text


def test_existing_mode_installs_nothing_but_contributes_our_objects(existing):
    stack, config = existing
    assert stack.of_type(CHART_TYPE) == []
    assert len(stack.of_type(SERVICE_MONITOR)) == len(config.project.services)
    assert len(stack.of_type(PROMETHEUS_RULE)) == 1
    assert len(stack.of_type(CONFIG_MAP)) == 1
    # our routing reaches the cluster's Alertmanager too: one AlertmanagerConfig per namespace
    configs = stack.of_type("kubernetes:monitoring.coreos.com/v1alpha1:AlertmanagerConfig")
    assert sorted(c.inputs["metadata"]["namespace"] for c in configs) == sorted({s.namespace for s in config.project.services})
    assert all(c.inputs["spec"] == plain(alertmanager_config_spec(config.project.monitoring)) for c in configs)
    release = config.project.monitoring.release_name
    for resource in stack.of_type(SERVICE_MONITOR) + stack.of_type(PROMETHEUS_RULE):
        assert resource.inputs["metadata"]["labels"]["release"] == release


def test_install_mode_has_no_alertmanager_config_object(installed):
    stack, _ = installed
    assert stack.of_type("kubernetes:monitoring.coreos.com/v1alpha1:AlertmanagerConfig") == []


# --------------------------------------------------------------------------- our objects


def test_one_service_monitor_per_service_copying_pod_labels(installed):
    stack, config = installed
    monitors = {m.inputs["metadata"]["name"]: m.inputs for m in stack.of_type(SERVICE_MONITOR)}
    assert set(monitors) == {s.name for s in config.project.services} == {"genesis", "genesis-worker"}
    for service in config.project.services:
        monitor = monitors[service.name]
        spec = monitor["spec"]
        assert monitor["metadata"]["namespace"] == service.namespace
        assert spec["podTargetLabels"] == POD_TARGET_LABELS == ["app", "track", "version"]
        assert spec["selector"]["matchLabels"] == {"app": service.name}
        assert spec["selector"]["matchExpressions"] == [
            {"key": "track", "operator": "In", "values": ["stable", "canary"]}
        ]
        assert spec["namespaceSelector"] == {"matchNames": [service.namespace]}
        [endpoint] = spec["endpoints"]
        assert endpoint["path"] == service.metrics_path
        assert endpoint["port"] == "http"


def test_prometheus_rule_holds_the_generated_groups(installed):
    stack, config = installed
    [rule] = stack.of_type(PROMETHEUS_RULE)
    expected = rule_groups(config.stage, config.project.monitoring, config.project.services)
    assert rule.inputs["spec"] == plain(expected)
    assert rule.inputs["metadata"]["namespace"] == config.project.monitoring.namespace


def test_dashboard_config_map_carries_the_sidecar_label(installed):
    stack, config = installed
    [config_map] = stack.of_type(CONFIG_MAP)
    metadata = config_map.inputs["metadata"]
    assert metadata["labels"]["grafana_dashboard"] == "1"
    assert metadata["annotations"]["grafana_folder"] == config.project.monitoring.grafana.folder
    board = build_dashboard(config.stage, config.project.stage_order)
    assert config_map.inputs["data"] == {f"{board['uid']}.json": dashboard_json(board)}


def test_external_grafana_gets_folder_and_dashboard_not_config_maps(external_grafana):
    stack, config = external_grafana
    assert stack.of_type(CONFIG_MAP) == []
    [provider] = stack.of_type("pulumi:providers:grafana")
    assert provider.inputs["url"] == "https://grafana.example.com"
    # auth comes from the Pulumi secret `grafana:auth` and stays a secret (never a stage file)
    assert provider.inputs["auth"][_special_sig_key] == _special_secret_sig
    [folder] = stack.of_type("grafana:oss/folder:Folder")
    assert folder.inputs["title"] == "Genesis Releases"
    [dashboard] = stack.of_type("grafana:oss/dashboard:Dashboard")
    board = build_dashboard(config.stage, config.project.stage_order)
    assert json.loads(dashboard.inputs["configJson"]) == board
    assert dashboard.inputs["folder"] == folder.inputs["uid"]
    # the chart's own Grafana is not installed when an external one is used
    [chart] = stack.of_type(CHART_TYPE)
    assert chart.inputs["values"]["grafana"]["enabled"] is False


@pytest.mark.parametrize("fixture", ["installed", "existing", "external_grafana"])
def test_every_child_is_parented_to_the_component(fixture, request):
    stack, _ = request.getfixturevalue(fixture)
    component = stack.resources[NAME]
    assert component.type == "genesis:monitoring:MonitoringStack"
    # the Kubernetes provider is the program's (shared with the services), not the component's
    children = [r for n, r in stack.resources.items() if n != NAME and r.type != "pulumi:providers:kubernetes"]
    assert children
    orphans = [r.name for r in children if r.parent != NAME]
    assert orphans == []


# --------------------------------------------------------------------------- schema validation


def as_object(resource) -> dict[str, Any]:
    inputs = resource.inputs
    return {k: inputs[k] for k in ("apiVersion", "kind", "metadata", "spec")}


def test_monitor_and_rule_objects_validate_against_prometheus_operator_schemas(installed):
    stack, _ = installed
    objects = [as_object(r) for r in stack.of_type(SERVICE_MONITOR) + stack.of_type(PROMETHEUS_RULE)]
    results = validate_k8s_objects(objects)
    assert [(r["kind"], r["name"]) for r in results] == [(o["kind"], o["metadata"]["name"]) for o in objects]
    invalid = [r for r in results if not r["valid"]]
    assert invalid == []


def test_the_alertmanager_config_validates_against_the_crd_schema(existing):
    stack, _ = existing
    objects = [as_object(r) for r in stack.of_type("kubernetes:monitoring.coreos.com/v1alpha1:AlertmanagerConfig")]
    results = validate_k8s_objects(objects)
    assert [r["kind"] for r in results] == ["AlertmanagerConfig"] and all(r["valid"] for r in results), results
    spec = objects[0]["spec"]
    # secrets only as SecretKeySelectors of Secrets in the CR's own namespace
    selectors = [c[key] for r in spec["receivers"] for configs, key in (("slackConfigs", "apiURL"), ("pagerdutyConfigs", "routingKey"), ("emailConfigs", "authPassword")) for c in r.get(configs, [])]
    assert len(selectors) == 5 and all(set(s) == {"name", "key"} for s in selectors)
    broken = {**objects[0], "spec": {**spec, "route": {**spec["route"], "matchers": [{"name": "rollout", "matchType": "==", "value": "x"}]}}}
    [result] = validate_k8s_objects([broken])
    assert not result["valid"] and any("matchType" in e for e in result["errors"])


def test_validator_rejects_a_broken_service_monitor(installed):
    stack, _ = installed
    broken = as_object(stack.of_type(SERVICE_MONITOR)[0])
    broken["spec"]["podTargetLabels"] = "app"
    broken["spec"]["endpoints"][0]["interval"] = "every 30 seconds"
    [result] = validate_k8s_objects([broken])
    assert not result["valid"]
    assert any("/spec/podTargetLabels" in e for e in result["errors"])
    assert any("/spec/endpoints/0/interval" in e for e in result["errors"])


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics for matchLabels and In expressions."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        assert expr["operator"] == "In", expr
        if labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


@pytest.mark.parametrize("router", ["gateway-api", "istio", "replica-ratio"])
def test_service_monitor_selects_exactly_the_track_services(router):
    """Against the Services WeightedService really declares: the apex Service some routers add
    selects both tracks' pods, so scraping it too would double every series."""
    from components.weighted_service import WeightedService

    values = copy.deepcopy(values_for_stage(ROOT, "canary"))
    values["routing"] = {**values["routing"], "router": router}
    config = parse_stack_config(values, NAMESPACE, "test values")
    service = config.project.services[0]

    def program() -> None:
        provider = kubernetes_provider(config.project.cluster)
        WeightedService(service.name, service, config.stage, config.stage.flags, config.project.routing, provider)
        MonitoringStack(NAME, config, provider)

    stack = run_program(values, program)
    [monitor] = stack.of_type(SERVICE_MONITOR)
    selector = monitor.inputs["spec"]["selector"]
    services = [
        s for s in stack.of_type("kubernetes:core/v1:Service")
        if s.inputs["metadata"]["namespace"] == service.namespace
    ]
    selected = sorted(s.inputs["metadata"]["name"] for s in services if selects(selector, s.inputs["metadata"]["labels"]))
    assert selected == [f"{service.name}-canary", f"{service.name}-stable"]
    for s in services:
        if s.inputs["metadata"]["name"] in selected:
            assert any(p["name"] == monitor.inputs["spec"]["endpoints"][0]["port"] for p in s.inputs["spec"]["ports"])
