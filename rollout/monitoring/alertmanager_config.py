"""Alertmanager routing generated from MonitoringConfig.alerting, as a good neighbour in a
cluster's Alertmanager.

Who hears what (the Day-0 plan's communication plan). Every alert of ours carries the label
`rollout="genesis-rollout"` (the alert rules add it, the bot posts it), and our routes match only
those:
- severity=critical     -> pagerduty + slack-incidents  (rollback triggers, rollbacks, the bot gone silent)
- event=stage-change    -> stage-changes                (Slack #deployments + team e-mail, no "resolved")
- anything else of ours -> slack-deployments            (warnings)
The daily status e-mail is sent by `rollout report --daily` itself, not through Alertmanager.
A critical alert of ours inhibits our warnings of the same namespace, app and track.

Everything that is not ours is left where the cluster sends it. install mode writes the whole
alertmanager.yaml, so it keeps kube-prometheus-stack 79.5's own defaults (its `null` receiver,
the Watchdog route, its four inhibit rules, templates): Helm deep-merges maps but replaces
lists, so values that named only our routes would drop them. `alerting.defaultReceiver` may send
the other alerts to one of our receivers instead of `null`. existing mode cannot touch the
cluster's file: it contributes an AlertmanagerConfig (monitoring.coreos.com/v1alpha1) per service
namespace with the same routes and receivers (`alertmanager_config_specs`); the operator scopes
it to alerts with that namespace.

Secrets are never written out. alertmanager.yaml reads them from files (Alertmanager 0.25:
slack `api_url_file`, pagerduty `routing_key_file`, email `auth_password_file`), which
kube-prometheus-stack mounts from the Secrets in `alertmanager.alertmanagerSpec.secrets` at
/etc/alertmanager/secrets/<secret-name>/<key> (`secret_names()` is that list); the
AlertmanagerConfig references them as SecretKeySelectors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from rollout.model import MonitoringConfig, SecretRef, StackConfig, format_duration
from rollout.monitoring.names import (
    EVENT_LABEL,
    ROLLOUT_LABEL,
    ROLLOUT_VALUE,
    STAGE_CHANGE,
)

SECRETS_DIR = "/etc/alertmanager/secrets"
CONFIG_FILE = "alertmanager.yaml"
GROUP_BY = ["alertname", "app", "track"]
INHIBIT_EQUAL = ["namespace", "app", "track"]
CRD_API_VERSION = "monitoring.coreos.com/v1alpha1"

PAGERDUTY, SLACK_INCIDENTS, SLACK_DEPLOYMENTS, STAGE_CHANGES = (
    "pagerduty", "slack-incidents", "slack-deployments", "stage-changes",
)
NULL = "null"  # the chart's receiver that sends nowhere
OURS = f'{ROLLOUT_LABEL}="{ROLLOUT_VALUE}"'

# kube-prometheus-stack 79.5.0, charts/kube-prometheus-stack/values.yaml `alertmanager.config`
# (prometheus-community/helm-charts a064fc60), kept whole: lists in Helm values replace the chart's.
CHART_DEFAULTS: dict[str, Any] = {
    "global": {"resolve_timeout": "5m"},
    "inhibit_rules": [
        {"source_matchers": ["severity = critical"], "target_matchers": ["severity =~ warning|info"],
         "equal": ["namespace", "alertname"]},
        {"source_matchers": ["severity = warning"], "target_matchers": ["severity = info"],
         "equal": ["namespace", "alertname"]},
        {"source_matchers": ["alertname = InfoInhibitor"], "target_matchers": ["severity = info"],
         "equal": ["namespace"]},
        {"target_matchers": ["alertname = InfoInhibitor"]},
    ],
    "route": {
        "group_by": ["namespace"],
        "group_wait": "30s",
        "group_interval": "5m",
        "repeat_interval": "12h",
        "receiver": NULL,
        "routes": [{"receiver": NULL, "matchers": ['alertname = "Watchdog"']}],
    },
    "receivers": [{"name": NULL}],
    "templates": ["/etc/alertmanager/config/*.tmpl"],
}

# Slack shows annotations; Alertmanager's default Slack text is empty.
_SLACK_TEXT = (
    "{{ range .Alerts }}*{{ .Annotations.summary }}*\n{{ .Annotations.description }}\n"
    "{{ if .Annotations.dashboard_url }}Dashboard: {{ .Annotations.dashboard_url }}\n{{ end }}"
    "{{ if .Annotations.rollback_command }}Roll back: `{{ .Annotations.rollback_command }}`\n{{ end }}"
    "{{ if .Annotations.runbook_url }}Runbook: {{ .Annotations.runbook_url }}\n{{ end }}{{ end }}"
)
_SLACK_TITLE = (
    "[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }} {{ .CommonLabels.app }} {{ .CommonLabels.track }}"
)


# --------------------------------------------------------------------------- what, once


@dataclass(frozen=True)
class Integration:
    kind: str  # slack | pagerduty | email
    secret: SecretRef
    send_resolved: bool
    fields: dict[str, Any] = field(default_factory=dict)  # non-secret settings, snake_case


@dataclass(frozen=True)
class Receiver:
    name: str
    integrations: tuple[Integration, ...]


@dataclass(frozen=True)
class Route:
    receiver: str
    matchers: tuple[tuple[str, str, str], ...]  # (label, op, value)
    cont: bool = False


def receivers(monitoring: MonitoringConfig) -> list[Receiver]:
    alerting = monitoring.alerting
    email, slack, pagerduty = alerting.email, alerting.slack, alerting.pagerduty

    def to_slack(channel, resolved: bool) -> Integration:  # noqa: ANN001
        fields = {"channel": channel.channel, "title": _SLACK_TITLE, "text": _SLACK_TEXT}
        return Integration("slack", channel.webhook, resolved, fields)

    paging = {"severity": "critical", **({"url": pagerduty.url} if pagerduty.url else {})}
    mail = {"to": email.to, "from": email.sender, "smarthost": email.smarthost,
            "auth_username": email.username, "require_tls": email.require_tls}
    return [
        Receiver(PAGERDUTY, (Integration("pagerduty", pagerduty.routing_key, True, paging),)),
        Receiver(SLACK_INCIDENTS, (to_slack(slack.incidents, True),)),
        Receiver(SLACK_DEPLOYMENTS, (to_slack(slack.deployments, True),)),
        # a stage change is news, not a condition: no "resolved" message afterwards
        Receiver(STAGE_CHANGES, (to_slack(slack.deployments, False), Integration("email", email.password, False, mail))),
    ]


ROUTES = (
    Route(PAGERDUTY, (("severity", "=", "critical"),), cont=True),
    Route(SLACK_INCIDENTS, (("severity", "=", "critical"),)),
    Route(STAGE_CHANGES, ((EVENT_LABEL, "=", STAGE_CHANGE),)),
)
OUR_DEFAULT = SLACK_DEPLOYMENTS  # warnings and anything else of ours


def secret_path(ref: SecretRef, secrets_dir: str = SECRETS_DIR) -> str:
    """Where the mounted Secret key is read from inside the Alertmanager pod."""
    return str(PurePosixPath(secrets_dir) / ref.name / ref.key)


def secret_names(monitoring: MonitoringConfig) -> list[str]:
    """Kubernetes Secrets to mount (alertmanagerSpec.secrets), without duplicates."""
    return list(dict.fromkeys(i.secret.name for r in receivers(monitoring) for i in r.integrations))


def receiver_names(monitoring: MonitoringConfig) -> list[str]:
    return [r.name for r in receivers(monitoring)]


# --------------------------------------------------------------------------- alertmanager.yaml


_FILE_KEY = {"slack": ("slack_configs", "api_url_file"), "pagerduty": ("pagerduty_configs", "routing_key_file"),
             "email": ("email_configs", "auth_password_file")}


def _file_receiver(receiver: Receiver, secrets_dir: str) -> dict[str, Any]:
    out: dict[str, Any] = {"name": receiver.name}
    for integration in receiver.integrations:
        configs, secret_key = _FILE_KEY[integration.kind]
        out.setdefault(configs, []).append(
            {secret_key: secret_path(integration.secret, secrets_dir), **integration.fields,
             "send_resolved": integration.send_resolved}
        )
    return out


def _matcher(label: str, op: str, value: str) -> str:
    return f'{label}{op}"{value}"'


def our_route(monitoring: MonitoringConfig) -> dict[str, Any]:
    """Our subtree of the routing tree: only alerts labelled rollout="genesis-rollout"."""
    alerting = monitoring.alerting
    return {
        "receiver": OUR_DEFAULT,
        "matchers": [OURS],
        "group_by": list(GROUP_BY),
        "group_wait": format_duration(alerting.group_wait),
        "group_interval": format_duration(alerting.group_interval),
        "repeat_interval": format_duration(alerting.repeat_interval),
        "routes": [
            {"receiver": r.receiver, "matchers": [_matcher(*m) for m in r.matchers], **({"continue": True} if r.cont else {})}
            for r in ROUTES
        ],
    }


def our_inhibition() -> dict[str, Any]:
    return {
        "source_matchers": [OURS, 'severity="critical"'],
        "target_matchers": [OURS, 'severity="warning"'],
        "equal": list(INHIBIT_EQUAL),
    }


def render_alertmanager_config(
    monitoring: MonitoringConfig,
    secrets_dir: str = SECRETS_DIR,
    webhook_override: str | None = None,
) -> dict[str, Any]:
    """The whole alertmanager.yaml for install mode: the chart's defaults plus our subtree.

    webhook_override: for local demos and live tests, every receiver of ours keeps its name and
    place in the routing tree but delivers to this webhook URL instead.
    """
    ours = [_file_receiver(r, secrets_dir) for r in receivers(monitoring)]
    if webhook_override is not None:
        if not webhook_override.startswith(("http://", "https://")):
            raise ValueError(f"webhook_override must be an http:// or https:// URL (got {webhook_override!r})")
        ours = [{"name": r["name"], "webhook_configs": [{"url": webhook_override, "send_resolved": True}]} for r in ours]
    default = monitoring.alerting.default_receiver
    known = [NULL, *receiver_names(monitoring)]
    if default not in known:
        raise ValueError(f"alerting.defaultReceiver {default!r} is not a receiver; choose one of {known}")
    chart = CHART_DEFAULTS
    return {
        "global": dict(chart["global"]),
        "route": {**chart["route"], "receiver": default, "routes": [*chart["route"]["routes"], our_route(monitoring)]},
        "inhibit_rules": [*chart["inhibit_rules"], our_inhibition()],
        "receivers": [*chart["receivers"], *ours],
        "templates": list(chart["templates"]),
    }


def render_alertmanager_yaml(
    monitoring: MonitoringConfig,
    secrets_dir: str = SECRETS_DIR,
    webhook_override: str | None = None,
) -> str:
    document = render_alertmanager_config(monitoring, secrets_dir, webhook_override)
    header = "# Generated by rollout.monitoring.alertmanager_config. Secrets are read from files, never inlined.\n"
    return header + yaml.safe_dump(document, sort_keys=False, width=10_000, allow_unicode=True)


def write_alertmanager_config(
    config: StackConfig,
    out_dir: Path | str,
    secrets_dir: str = SECRETS_DIR,
    webhook_override: str | None = None,
) -> Path:
    """Write out_dir/alertmanager/alertmanager.yaml and return its path."""
    path = Path(out_dir) / "alertmanager" / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_alertmanager_yaml(config.project.monitoring, secrets_dir, webhook_override))
    return path


# --------------------------------------------------------------------------- AlertmanagerConfig


_CRD_SECRET = {"slack": ("slackConfigs", "apiURL"), "pagerduty": ("pagerdutyConfigs", "routingKey"),
               "email": ("emailConfigs", "authPassword")}
_CRD_FIELD = {"auth_username": "authUsername", "require_tls": "requireTLS"}


def _crd_receiver(receiver: Receiver) -> dict[str, Any]:
    out: dict[str, Any] = {"name": receiver.name}
    for integration in receiver.integrations:
        configs, secret_key = _CRD_SECRET[integration.kind]
        fields = {_CRD_FIELD.get(k, k): v for k, v in integration.fields.items()}
        out.setdefault(configs, []).append(
            {secret_key: {"name": integration.secret.name, "key": integration.secret.key}, **fields,
             "sendResolved": integration.send_resolved}
        )
    return out


def _crd_matchers(matchers: tuple[tuple[str, str, str], ...]) -> list[dict[str, str]]:
    return [{"name": label, "matchType": op, "value": value} for label, op, value in matchers]


def alertmanager_config_spec(monitoring: MonitoringConfig) -> dict[str, Any]:
    """The spec of an AlertmanagerConfig with our routes and receivers (existing mode). The
    Prometheus Operator adds `namespace="<its namespace>"` to the route and the inhibit rule
    (alertmanagerConfigMatcherStrategy OnNamespace, the default), so it sees only alerts of
    that namespace: one per service namespace."""
    alerting = monitoring.alerting
    ours = ((ROLLOUT_LABEL, "=", ROLLOUT_VALUE),)
    return {
        "route": {
            "receiver": OUR_DEFAULT,
            "matchers": _crd_matchers(ours),
            "groupBy": list(GROUP_BY),
            "groupWait": format_duration(alerting.group_wait),
            "groupInterval": format_duration(alerting.group_interval),
            "repeatInterval": format_duration(alerting.repeat_interval),
            "routes": [
                {"receiver": r.receiver, "matchers": _crd_matchers(r.matchers), **({"continue": True} if r.cont else {})}
                for r in ROUTES
            ],
        },
        "receivers": [_crd_receiver(r) for r in receivers(monitoring)],
        "inhibitRules": [{
            "sourceMatch": _crd_matchers((*ours, ("severity", "=", "critical"))),
            "targetMatch": _crd_matchers((*ours, ("severity", "=", "warning"))),
            "equal": list(INHIBIT_EQUAL),
        }],
    }
