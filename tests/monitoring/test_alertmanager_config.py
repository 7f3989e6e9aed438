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
from support.promtool import REPO_ROOT, run, run_ok

from rollout.config import load_stack_config
from rollout.model import MonitoringConfig, SecretRef, StackConfig
from rollout.monitoring.alert_rules import RELEASE_BOT_ALERTS
from rollout.monitoring.alertmanager_config import (
    EMAIL,
    PAGERDUTY,
    SLACK,
    render_alertmanager_config,
    render_alertmanager_yaml,
    secret_names,
    secret_path,
    write_alertmanager_config,
)
from rollout.release.notify import SOURCE as RELEASE_BOT_SOURCE
from rollout.release.notify import rollback_alert
from rollout.review.localstack import WebhookReceiver, start_alertmanager, wait_for

# Inline secret fields of Alertmanager 0.25 integrations: none may ever be rendered.
INLINE_SECRET_KEYS = {
    "api_url", "routing_key", "service_key", "auth_password", "auth_secret",
    "smtp_auth_password", "smtp_auth_secret", "slack_api_url", "bearer_token", "password",
}


def config() -> StackConfig:
    return load_stack_config(REPO_ROOT, "canary")


def monitoring() -> MonitoringConfig:
    return config().project.monitoring


def secret_refs(mon: MonitoringConfig) -> list[SecretRef]:
    alerting = mon.alerting
    return [alerting.email.password, alerting.slack.webhook, alerting.pagerduty.routing_key]


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


@pytest.fixture
def rendered(tmp_path: Path) -> Path:
    mon = monitoring()
    secrets = tmp_path / "secrets"
    mount_secrets(mon, secrets)
    path = tmp_path / "alertmanager.yaml"
    path.write_text(render_alertmanager_yaml(mon, secrets_dir=str(secrets)))
    return path


# --------------------------------------------------------------------------- amtool


def test_amtool_accepts_the_rendered_config(rendered: Path) -> None:
    output = run_ok("amtool", "check-config", rendered)
    assert "SUCCESS" in output and "3 receivers" in output and "1 inhibit rules" in output, output


BOT = f"source={RELEASE_BOT_SOURCE}"

@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        (["alertname=GenesisErrorRateCritical", "severity=critical", "app=genesis", "track=canary"],
         [PAGERDUTY, SLACK, EMAIL]),
        (["alertname=GenesisStableDataMissing", "severity=warning", "app=genesis", "track=stable"],
         [SLACK, EMAIL]),
        (["alertname=GenesisRolloutRolledBack", "severity=critical", BOT, "app=genesis"],
         [PAGERDUTY, SLACK, EMAIL]),
        (["alertname=GenesisRolloutPromoted", "severity=info", BOT, "app=genesis"], [SLACK, EMAIL]),
        (["alertname=Watchdog", "severity=none"], [EMAIL]),
        (["alertname=SomethingElse"], [EMAIL]),
    ],
    ids=["critical", "warning", "bot-critical", "bot-info", "other", "no-labels"],
)
def test_routes(rendered: Path, labels: list[str], receivers: list[str]) -> None:
    run_ok(
        "amtool", "config", "routes", "test", f"--config.file={rendered}",
        f"--verify.receivers={','.join(receivers)}", *labels,
    )


def test_amtool_route_verification_fails_on_wrong_receivers(rendered: Path) -> None:
    """The assertion above is real: a warning must not page."""
    done = run(
        "amtool", "config", "routes", "test", f"--config.file={rendered}",
        f"--verify.receivers={PAGERDUTY},{SLACK},{EMAIL}", "severity=warning", "app=genesis",
    )
    assert done.returncode == 1, done.stdout + done.stderr


def test_the_bots_rollback_alert_pages_and_reaches_the_deployment_channel(rendered: Path) -> None:
    """The labels rollout.release.notify really sends on a rollback."""
    alert = rollback_alert(
        app="genesis", namespace="genesis", source_stage="canary", target_stage="stable",
        reason="3 failed checks", at=datetime.now(timezone.utc), runbook_url="r",
    )
    assert RELEASE_BOT_ALERTS[alert.labels["alertname"]] == alert.labels["severity"]
    labels = [f"{k}={v}" for k, v in alert.labels.items()]
    run_ok("amtool", "config", "routes", "test", f"--config.file={rendered}",
           f"--verify.receivers={PAGERDUTY},{SLACK},{EMAIL}", *labels)


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
    files = {k: v for k, v in walk(document) if k.endswith("_file")}
    assert files == {
        "auth_password_file": "/etc/alertmanager/secrets/alertmanager-smtp/password",
        "api_url_file": "/etc/alertmanager/secrets/alertmanager-slack/webhook-url",
        "routing_key_file": "/etc/alertmanager/secrets/alertmanager-pagerduty/routing-key",
    }
    assert secret_names(mon) == ["alertmanager-smtp", "alertmanager-slack", "alertmanager-pagerduty"]


def test_secret_names_are_not_repeated_when_secrets_share_a_kubernetes_secret() -> None:
    data = monitoring().model_dump(by_alias=True)
    alerting = data["alerting"]
    alerting["slack"]["webhook"] = {"name": "alertmanager", "key": "slack"}
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
    for receiver in local["receivers"]:
        assert set(receiver) == {"name", "webhook_configs"}
        assert receiver["webhook_configs"] == [{"url": "http://127.0.0.1:9999/hook", "send_resolved": True}]
    path = tmp_path / "local.yaml"
    path.write_text(yaml.safe_dump(local))
    run_ok("amtool", "check-config", path)
    run_ok("amtool", "config", "routes", "test", f"--config.file={path}",
           f"--verify.receivers={PAGERDUTY},{SLACK},{EMAIL}", "severity=critical")


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


def test_real_alertmanager_routes_and_inhibits_warnings_under_a_critical() -> None:
    """Real Alertmanager 0.25, every receiver overridden to a local webhook."""
    service = {"namespace": "genesis", "app": "genesis"}
    critical = {"alertname": "GenesisPipelexSuccessCritical", "severity": "critical", "track": "canary", **service}
    muted = {"alertname": "GenesisPipelexSuccessLow", "severity": "warning", "track": "canary", **service}
    other = {"alertname": "GenesisStableDataMissing", "severity": "warning", "track": "stable", **service}
    with WebhookReceiver() as hook:
        document = render_alertmanager_config(_fast(monitoring()), webhook_override=hook.url)
        with start_alertmanager(document) as am:
            _post(am.url, critical, muted, other)

            def delivered() -> set[tuple[str, str]] | None:
                got = {(a["labels"]["alertname"], a["receiver"]) for a in hook.alerts()}
                want = {(critical["alertname"], r) for r in (PAGERDUTY, SLACK, EMAIL)}
                want |= {(other["alertname"], r) for r in (SLACK, EMAIL)}
                return got if want <= got else None

            got = wait_for(delivered, 30, "notifications for the critical and the unrelated warning")
            assert not {r for name, r in got if name == muted["alertname"]}, got
            status = {
                a["labels"]["alertname"]: a["status"]
                for a in httpx.get(f"{am.url}/api/v2/alerts", timeout=5).json()
            }
            assert status[muted["alertname"]]["state"] == "suppressed"
            assert status[muted["alertname"]]["inhibitedBy"]
            assert status[other["alertname"]]["state"] == "active"


def test_real_alertmanager_reads_the_slack_webhook_url_from_the_mounted_file(tmp_path: Path) -> None:
    """No override: the Slack integration posts to the URL in the secret file (here a local receiver)."""
    mon = _fast(monitoring())
    with WebhookReceiver() as slack:
        secrets = tmp_path / "secrets"
        mount_secrets(mon, secrets, value_of=lambda ref: slack.url if ref.key == "webhook-url" else "dummy")
        text = render_alertmanager_yaml(mon, secrets_dir=str(secrets))
        assert slack.url not in text
        with start_alertmanager(text) as am:
            _post(am.url, {"alertname": "GenesisSpiceTaskRateLow", "severity": "warning",
                           "namespace": "genesis", "app": "genesis", "track": "canary"})
            payload = wait_for(lambda: slack.payloads[0] if slack.payloads else None, 30,
                               "the Slack message at the webhook URL read from the secret file")
    assert payload["channel"] == mon.alerting.slack.channel
    body = payload["attachments"][0]
    assert body["title"] == "[FIRING] GenesisSpiceTaskRateLow genesis canary"
    assert "GenesisSpiceTaskRateLow test" in body["text"]
