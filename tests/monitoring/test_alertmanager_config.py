"""rollout.monitoring.alertmanager_config: checked with the real amtool 0.25 and a real Alertmanager 0.25 on 127.0.0.1.

`amtool config routes test --verify.receivers=...` exits 1 when an alert would reach other
receivers than listed (in routing-tree order), so each route case is one amtool call.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest
import yaml
from support.helm import chart_alertmanager_config, merge
from support.promtool import REPO_ROOT, run, run_ok

from rollout.config import load_stack_config
from rollout.model import MonitoringConfig, SecretRef, StackConfig
from rollout.monitoring.alert_rules import stack_rule_groups
from rollout.monitoring.alertmanager_config import (
    NULL,
    PAGERDUTY,
    SLACK_DEPLOYMENTS,
    SLACK_INCIDENTS,
    STAGE_CHANGES,
    alertmanager_config_spec,
    render_alertmanager_config,
    render_alertmanager_yaml,
    secret_names,
    secret_path,
    write_alertmanager_config,
)
from rollout.release.notify import rollback_alert, stage_change_alert
from rollout.review.localstack import WebhookReceiver, start_alertmanager, wait_for

# Inline secret fields of Alertmanager 0.25 integrations: none may ever be rendered.
INLINE_SECRET_KEYS = {
    "api_url", "routing_key", "service_key", "auth_password", "auth_secret",
    "smtp_auth_password", "smtp_auth_secret", "slack_api_url", "bearer_token", "password",
}
PAGE = [PAGERDUTY, SLACK_INCIDENTS]  # critical: PagerDuty and Slack #incidents


def config() -> StackConfig:
    return load_stack_config(REPO_ROOT, "canary")


def monitoring() -> MonitoringConfig:
    return config().project.monitoring


def secret_refs(mon: MonitoringConfig) -> list[SecretRef]:
    alerting = mon.alerting
    return [alerting.email.password, alerting.slack.deployments.webhook, alerting.slack.incidents.webhook,
            alerting.pagerduty.routing_key]


def dummy_value(ref: SecretRef) -> str:
    return f"dummy-{ref.name}-{ref.key}"


def mount_secrets(
    mon: MonitoringConfig, root: Path, value_of: Callable[[SecretRef], str] = dummy_value
) -> dict[str, str]:
    """Lay out secret files like kube-prometheus-stack mounts them: <root>/<secret>/<key>."""
    values = {}
    for ref in secret_refs(mon):
        path = Path(secret_path(ref, str(root)))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value_of(ref))
        values[str(path)] = value_of(ref)
    return values


def walk(node: Any, key: str = ""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk(v, k)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item, key)
    else:
        yield key, node


def merged_with_the_chart(mon: MonitoringConfig, secrets_dir: str) -> dict[str, Any]:
    """What kube-prometheus-stack 79.5 runs: its default alertmanager.config, Helm-merged with
    the config the program puts in the chart's values (components.monitoring.values_for passes
    render_alertmanager_config unchanged: tests/components), here with secrets mounted locally."""
    return merge(chart_alertmanager_config(), render_alertmanager_config(mon, secrets_dir=secrets_dir))


@pytest.fixture
def rendered(tmp_path: Path) -> Path:
    mon = monitoring()
    secrets = tmp_path / "secrets"
    mount_secrets(mon, secrets)
    path = tmp_path / "alertmanager.yaml"
    path.write_text(yaml.safe_dump(merged_with_the_chart(mon, str(secrets))))
    return path


def rule_labels(alert: str, **extra: str) -> list[str]:
    """The labels an alert of the rendered rules really fires with (plus series labels)."""
    rules = [r for g in stack_rule_groups(config())["groups"] for r in g["rules"] if r.get("alert") == alert]
    labels = {"alertname": alert, **rules[0]["labels"], "namespace": "genesis", "app": "genesis", **extra}
    return [f"{k}={v}" for k, v in labels.items()]


def bot_labels(alert: Any) -> list[str]:
    return [f"{k}={v}" for k, v in alert.labels.items()]


def _change(action: str, source: str, target: str) -> Any:
    from types import SimpleNamespace

    now = datetime.now(timezone.utc)
    return SimpleNamespace(action=action, source=source, target=target, reason="r", started_at=now - timedelta(hours=48),
                           at=now, checks=[], applied=None)


def routes_test(path: Path, receivers: list[str], labels: list[str]) -> None:
    run_ok("amtool", "config", "routes", "test", f"--config.file={path}",
           f"--verify.receivers={','.join(receivers)}", *labels)


# --------------------------------------------------------------------------- amtool


def test_amtool_accepts_the_config_merged_into_the_charts_defaults(rendered: Path) -> None:
    output = run_ok("amtool", "check-config", rendered)
    assert "SUCCESS" in output and "5 receivers" in output and "5 inhibit rules" in output, output


def test_the_charts_defaults_survive_the_merge(rendered: Path) -> None:
    """Helm replaces lists: the program's values must carry the chart's null receiver, Watchdog
    route and inhibit rules itself, or they would be lost."""
    merged = yaml.safe_load(rendered.read_text())
    chart = chart_alertmanager_config()
    assert merged["route"]["receiver"] == NULL and merged["route"]["group_by"] == ["namespace"]
    assert chart["route"]["routes"][0] in merged["route"]["routes"]
    assert all(rule in merged["inhibit_rules"] for rule in chart["inhibit_rules"])
    assert {"name": NULL} in merged["receivers"] and merged["templates"] == chart["templates"]


CLUSTER_ALERTS = {
    "watchdog": ["alertname=Watchdog", "severity=none", "namespace=monitoring"],
    "info-inhibitor": ["alertname=InfoInhibitor", "severity=none", "namespace=genesis"],
    "kube-api-down": ["alertname=KubeAPIDown", "severity=critical"],
    "other-namespace-warning": ["alertname=KubePodCrashLooping", "severity=warning", "namespace=payments"],
    "cluster-critical-in-our-namespace": ["alertname=KubePodCrashLooping", "severity=critical", "namespace=genesis", "app=genesis"],
}


@pytest.mark.parametrize("name", sorted(CLUSTER_ALERTS))
def test_the_clusters_alerts_reach_none_of_our_receivers(rendered: Path, name: str) -> None:
    routes_test(rendered, [NULL], CLUSTER_ALERTS[name])


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        (lambda: rule_labels("GenesisErrorRateCritical", track="canary"), PAGE),
        (lambda: rule_labels("GenesisP95LatencyCritical", track="stable"), PAGE),
        (lambda: rule_labels("GenesisCanaryUnavailable", track="canary"), PAGE),
        (lambda: rule_labels("GenesisReleaseBotSilent"), PAGE),
        (lambda: rule_labels("GenesisReleaseJudgeFailing"), PAGE),
        (lambda: rule_labels("GenesisPipelexSuccessLow", track="canary"), [SLACK_DEPLOYMENTS]),
        (lambda: rule_labels("GenesisStableDataMissing", track="stable"), [SLACK_DEPLOYMENTS]),
        (lambda: bot_labels(rollback_alert(app="genesis", namespace="genesis", source_stage="majority",
                                           target_stage="stable", reason="r", at=datetime.now(timezone.utc),
                                           runbook_url="u")), PAGE),
        (lambda: bot_labels(stage_change_alert(_change("promote", "canary", "gradual"), app="genesis",
                                               namespace="genesis", weights={"canary": 10, "gradual": 50},
                                               dashboard_base_url=None)), [STAGE_CHANGES]),
        (lambda: bot_labels(stage_change_alert(_change("rollback", "majority", "stable"), app="genesis",
                                               namespace="genesis", weights={"majority": 80, "stable": 0},
                                               dashboard_base_url=None)), [STAGE_CHANGES]),
    ],
    ids=["error-rate", "p95", "unavailable", "bot-silent", "judge-failing", "pipelex-warning", "stable-missing",
         "rollback-page", "promotion-notice", "rollback-notice"],
)
def test_each_of_our_alerts_reaches_exactly_the_plans_channels(rendered: Path, labels, receivers) -> None:
    routes_test(rendered, receivers, labels())


def test_amtool_route_verification_fails_on_wrong_receivers(rendered: Path) -> None:
    """The assertion above is real: a warning must not page."""
    done = run(
        "amtool", "config", "routes", "test", f"--config.file={rendered}",
        f"--verify.receivers={','.join(PAGE)}", *rule_labels("GenesisPipelexSuccessLow", track="canary"),
    )
    assert done.returncode == 1, done.stdout + done.stderr


def test_other_alerts_can_go_to_a_receiver_named_in_config(tmp_path: Path) -> None:
    mon = monitoring()
    alerting = mon.alerting.model_copy(update={"default_receiver": SLACK_DEPLOYMENTS})
    custom = mon.model_copy(update={"alerting": alerting})
    path = tmp_path / "am.yaml"
    path.write_text(yaml.safe_dump(merge(chart_alertmanager_config(), render_alertmanager_config(custom))))
    routes_test(path, [SLACK_DEPLOYMENTS], CLUSTER_ALERTS["kube-api-down"])
    routes_test(path, [NULL], CLUSTER_ALERTS["watchdog"])  # the chart's own routes stay
    with pytest.raises(ValueError, match="alerting.defaultReceiver 'ops' is not a receiver"):
        render_alertmanager_config(mon.model_copy(update={"alerting": alerting.model_copy(update={"default_receiver": "ops"})}))


def test_existing_mode_routes_the_same_channels_through_an_alertmanager_config() -> None:
    spec = alertmanager_config_spec(monitoring())
    assert spec["route"]["matchers"] == [{"name": "rollout", "matchType": "=", "value": "genesis-rollout"}]
    assert [(r["receiver"], r.get("continue", False)) for r in spec["route"]["routes"]] == [
        (PAGERDUTY, True), (SLACK_INCIDENTS, False), (STAGE_CHANGES, False),
    ]
    assert spec["route"]["receiver"] == SLACK_DEPLOYMENTS
    file_receivers = {r["name"] for r in render_alertmanager_config(monitoring())["receivers"]} - {NULL}
    assert {r["name"] for r in spec["receivers"]} == file_receivers
    stage_changes = next(r for r in spec["receivers"] if r["name"] == STAGE_CHANGES)
    assert stage_changes["emailConfigs"][0]["authPassword"] == {"name": "alertmanager-smtp", "key": "password"}
    assert stage_changes["slackConfigs"][0]["sendResolved"] is False


# --------------------------------------------------------------------------- secrets


def test_no_secret_value_is_rendered_only_file_paths(tmp_path: Path) -> None:
    mon = monitoring()
    secrets = tmp_path / "secrets"
    values = mount_secrets(mon, secrets, value_of=lambda ref: f"s3cr3t-{ref.key}-0123456789")
    document = render_alertmanager_config(mon, secrets_dir=str(secrets))
    text = render_alertmanager_yaml(mon, secrets_dir=str(secrets))
    for value in values.values():
        assert value not in text
    leaves = list(walk(document))
    assert not [k for k, _ in leaves if k in INLINE_SECRET_KEYS]
    file_refs = {v for k, v in leaves if k.endswith("_file")}
    # each integration points at a mounted file, and at nothing else
    assert file_refs == set(values)


def test_secret_paths_follow_the_kube_prometheus_stack_mounts() -> None:
    mon = monitoring()
    document = render_alertmanager_config(mon)
    files = sorted({(k, v) for k, v in walk(document) if k.endswith("_file")})
    assert files == [
        ("api_url_file", "/etc/alertmanager/secrets/alertmanager-slack/deployments-webhook-url"),
        ("api_url_file", "/etc/alertmanager/secrets/alertmanager-slack/incidents-webhook-url"),
        ("auth_password_file", "/etc/alertmanager/secrets/alertmanager-smtp/password"),
        ("routing_key_file", "/etc/alertmanager/secrets/alertmanager-pagerduty/routing-key"),
    ]
    assert secret_names(mon) == ["alertmanager-pagerduty", "alertmanager-slack", "alertmanager-smtp"]


def test_secret_names_are_not_repeated_when_secrets_share_a_kubernetes_secret() -> None:
    data = monitoring().model_dump(by_alias=True)
    alerting = data["alerting"]
    alerting["slack"]["deployments"]["webhook"] = {"name": "alertmanager", "key": "slack-deployments"}
    alerting["slack"]["incidents"]["webhook"] = {"name": "alertmanager", "key": "slack-incidents"}
    alerting["pagerduty"]["routingKey"] = {"name": "alertmanager", "key": "pd"}
    alerting["email"]["password"] = {"name": "alertmanager", "key": "smtp"}
    shared = MonitoringConfig.model_validate(data)
    assert secret_names(shared) == ["alertmanager"]


# --------------------------------------------------------------------------- override, file


def test_webhook_override_keeps_the_routing_tree_and_receiver_names(tmp_path: Path) -> None:
    mon = monitoring()
    normal = render_alertmanager_config(mon)
    local = render_alertmanager_config(mon, webhook_override="http://127.0.0.1:9999/hook")
    assert local["route"] == normal["route"]
    assert local["inhibit_rules"] == normal["inhibit_rules"]
    assert [r["name"] for r in local["receivers"]] == [r["name"] for r in normal["receivers"]]
    assert local["receivers"][0] == {"name": NULL}  # the chart's stays as it is
    for receiver in local["receivers"][1:]:
        assert set(receiver) == {"name", "webhook_configs"}
        assert receiver["webhook_configs"] == [{"url": "http://127.0.0.1:9999/hook", "send_resolved": True}]
    path = tmp_path / "local.yaml"
    path.write_text(yaml.safe_dump(local))
    run_ok("amtool", "check-config", path)
    routes_test(path, PAGE, rule_labels("GenesisErrorRateCritical", track="canary"))


def test_webhook_override_must_be_a_url() -> None:
    with pytest.raises(ValueError, match="webhook_override must be an http:// or https:// URL"):
        render_alertmanager_config(monitoring(), webhook_override="127.0.0.1:9999")


def test_write_alertmanager_config(tmp_path: Path) -> None:
    path = write_alertmanager_config(config(), tmp_path)
    assert path == tmp_path / "alertmanager" / "alertmanager.yaml"
    assert yaml.safe_load(path.read_text()) == render_alertmanager_config(monitoring())


# --------------------------------------------------------------------------- real Alertmanager


def _post(url: str, *alerts: dict[str, str]) -> None:
    now = datetime.now(timezone.utc)
    body = [
        {
            "labels": labels,
            "annotations": {"summary": f"{labels['alertname']} test", "description": "d", "runbook_url": "r"},
            "startsAt": now.isoformat(),
            "endsAt": (now + timedelta(minutes=10)).isoformat(),
        }
        for labels in alerts
    ]
    httpx.post(f"{url}/api/v2/alerts", json=body, timeout=5).raise_for_status()


def _fast(mon: MonitoringConfig) -> MonitoringConfig:
    """Same config with second-scale grouping timers, so the test need not wait 30 s."""
    second = timedelta(seconds=1)
    alerting = mon.alerting.model_copy(update={"group_wait": second, "group_interval": second})
    return mon.model_copy(update={"alerting": alerting})


def test_real_alertmanager_inhibits_our_warnings_under_our_critical_only() -> None:
    """Real Alertmanager 0.25, our receivers overridden to a local webhook. Our critical mutes our
    warning of the same app and track; a cluster critical in our namespace (no rollout label)
    mutes nothing of ours."""
    service = {"namespace": "genesis", "app": "genesis", "rollout": "genesis-rollout"}
    critical = {"alertname": "GenesisPipelexSuccessCritical", "severity": "critical", "track": "canary", **service}
    muted = {"alertname": "GenesisPipelexSuccessLow", "severity": "warning", "track": "canary", **service}
    other = {"alertname": "GenesisStableDataMissing", "severity": "warning", "track": "stable", **service}
    cluster = {"alertname": "KubePodCrashLooping", "severity": "critical", "namespace": "genesis", "app": "genesis", "track": "stable"}
    with WebhookReceiver() as hook:
        document = render_alertmanager_config(_fast(monitoring()), webhook_override=hook.url)
        with start_alertmanager(document) as am:
            _post(am.url, critical, muted, other, cluster)

            def delivered() -> set[tuple[str, str]] | None:
                got = {(a["labels"]["alertname"], a["receiver"]) for a in hook.alerts()}
                want = {(critical["alertname"], r) for r in PAGE} | {(other["alertname"], SLACK_DEPLOYMENTS)}
                return got if want <= got else None

            got = wait_for(delivered, 30, "notifications for the critical and the unrelated warning")
            assert not {r for name, r in got if name in (muted["alertname"], cluster["alertname"])}, got
            status = {
                a["labels"]["alertname"]: a["status"]
                for a in httpx.get(f"{am.url}/api/v2/alerts", timeout=5).json()
            }
            assert status[muted["alertname"]]["state"] == "suppressed"
            assert status[muted["alertname"]]["inhibitedBy"]
            assert status[other["alertname"]]["state"] == "active"  # the cluster critical inhibits nothing of ours


def test_real_alertmanager_reads_the_slack_webhook_url_from_the_mounted_file(tmp_path: Path) -> None:
    """No override: the Slack integration posts to the URL in the secret file (here a local receiver)."""
    mon = _fast(monitoring())
    with WebhookReceiver() as slack:
        secrets = tmp_path / "secrets"
        mount_secrets(mon, secrets, value_of=lambda ref: slack.url if ref.key.endswith("webhook-url") else "dummy")
        text = render_alertmanager_yaml(mon, secrets_dir=str(secrets))
        assert slack.url not in text
        with start_alertmanager(text) as am:
            _post(am.url, {"alertname": "GenesisSpiceTaskRateLow", "severity": "warning", "rollout": "genesis-rollout",
                           "namespace": "genesis", "app": "genesis", "track": "canary"})
            payload = wait_for(lambda: slack.payloads[0] if slack.payloads else None, 30,
                               "the Slack message at the webhook URL read from the secret file")
    assert payload["channel"] == mon.alerting.slack.deployments.channel
    body = payload["attachments"][0]
    assert body["title"] == "[FIRING] GenesisSpiceTaskRateLow genesis canary"
    assert "GenesisSpiceTaskRateLow test" in body["text"]


# --------------------------------------------------------------------------- existing mode, merged


def operator_merged(base: dict[str, Any], specs: dict[str, dict[str, Any]], name: str = "genesis-rollout") -> dict[str, Any]:
    """The Alertmanager config the Prometheus Operator builds from the cluster's base config and
    our AlertmanagerConfigs (one per namespace), as prometheus-operator v0.86.2 does it
    (pkg/alertmanager/amcfg.go): ConfigBuilder.AddAlertmanagerConfigs converts each CR's route
    (convertRoute: receivers renamed `<namespace>/<name>/<receiver>` by makeNamespacedString),
    namespaceEnforcer.processRoute appends the matcher `namespace="<CR namespace>"` to the CR's top
    route, continueToNextRoute sets `continue: true` on it, and the CR routes are prepended to the
    base config's routes. Receivers are kept by name only: routing does not read their
    integrations (the operator renders them from the CR's Secrets). A stand-in for the Operator,
    which cannot run here; amtool then routes on the result."""

    def route(spec: dict[str, Any], namespace: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "receiver": f"{namespace}/{name}/{spec['receiver']}",
            "matchers": [f'{m["name"]}{m.get("matchType", "=")}"{m["value"]}"' for m in spec.get("matchers", [])],
        }
        if spec.get("continue"):
            out["continue"] = True
        if spec.get("routes"):
            out["routes"] = [route(child, namespace) for child in spec["routes"]]
        return out

    merged = yaml.safe_load(yaml.safe_dump(base))
    top = []
    for namespace in sorted(specs):
        converted = route(specs[namespace]["route"], namespace)
        converted["matchers"].append(f'namespace="{namespace}"')  # namespaceEnforcer
        converted["continue"] = True  # continueToNextRoute
        top.append(converted)
        merged["receivers"] += [{"name": f"{namespace}/{name}/{r['name']}"} for r in specs[namespace]["receivers"]]
    merged["route"]["routes"] = top + merged["route"].get("routes", [])
    return merged


@pytest.fixture(scope="module")
def existing_mode(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("operator") / "alertmanager.yaml"
    path.write_text(yaml.safe_dump(operator_merged(chart_alertmanager_config(), {"genesis": alertmanager_config_spec(monitoring())})))
    run_ok("amtool", "check-config", path)
    return path


def rule_labels_as_fired(alert: str) -> list[str]:
    """The labels the dead man's switch fires with: `max()` and `absent_over_time()` keep no
    series label but the selector's equality matcher (`rollout`); the rest are the rule's."""
    rules = [r for g in stack_rule_groups(config())["groups"] for r in g["rules"] if r.get("alert") == alert]
    labels = {"alertname": alert, ROLLOUT_LABEL_NAME: "genesis-rollout", **rules[0]["labels"]}
    return [f"{k}={v}" for k, v in labels.items()]


ROLLOUT_LABEL_NAME = "rollout"


@pytest.mark.parametrize("alert", ["GenesisReleaseBotSilent", "GenesisReleaseJudgeFailing", "GenesisStackLocked"])
def test_the_dead_mans_switch_reaches_the_pagers_through_the_operator_merged_routing(existing_mode: Path, alert: str) -> None:
    """So do the judge-failing and stack-locked pages: they aggregate the bot's metrics the same way."""
    labels = rule_labels_as_fired(alert)
    assert "namespace=genesis" in labels  # a static label: the aggregation dropped the series' one
    routes_test(existing_mode, [f"genesis/genesis-rollout/{r}" for r in PAGE], labels)


def test_without_the_namespace_label_the_operator_merged_routing_drops_it(existing_mode: Path) -> None:
    """What the static label fixes: the Operator's namespace matcher sends it to the root (`null`)."""
    labels = [label for label in rule_labels_as_fired("GenesisReleaseBotSilent") if not label.startswith("namespace=")]
    routes_test(existing_mode, [NULL], labels)


def test_the_operator_merged_routing_still_routes_our_series_alerts_and_leaves_the_clusters(existing_mode: Path) -> None:
    routes_test(existing_mode, [f"genesis/genesis-rollout/{r}" for r in PAGE], rule_labels("GenesisErrorRateCritical", track="canary"))
    routes_test(existing_mode, [NULL], CLUSTER_ALERTS["watchdog"])
