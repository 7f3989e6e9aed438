"""alertmanager.yaml generated from MonitoringConfig.alerting.

Routing (every alert is grouped by alertname, app and track):
- severity=critical          -> pagerduty          (and on, see below)
- source=release-bot         -> slack-deployments  (the bot's own alerts, e.g. a rollback)
- other warning and critical -> slack-deployments
- everything                 -> team-email
so a critical alert pages, shows in #deployments and reaches the team's mailbox; a warning
goes to Slack and email; anything else (info) to email only. A critical alert inhibits the
warnings of the same namespace, app and track.

Secrets are never written into the file: every integration reads its secret from a file
(Alertmanager 0.25 supports slack `api_url_file`, pagerduty `routing_key_file`, email
`auth_password_file`). kube-prometheus-stack mounts the Kubernetes Secrets listed in
`alertmanager.alertmanagerSpec.secrets` at /etc/alertmanager/secrets/<secret-name>/<key>;
`secret_names()` is that list.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from rollout.model import MonitoringConfig, SecretRef, StackConfig, format_duration
from rollout.monitoring.names import SOURCE as RELEASE_BOT_SOURCE

SECRETS_DIR = "/etc/alertmanager/secrets"
CONFIG_FILE = "alertmanager.yaml"
GROUP_BY = ["alertname", "app", "track"]
INHIBIT_EQUAL = ["namespace", "app", "track"]

EMAIL, SLACK, PAGERDUTY = "team-email", "slack-deployments", "pagerduty"

# Slack shows annotations; Alertmanager's default Slack text is empty.
_SLACK_TEXT = (
    "{{ range .Alerts }}*{{ .Annotations.summary }}*\n{{ .Annotations.description }}\n"
    "Runbook: {{ .Annotations.runbook_url }}\n{{ end }}"
)
_SLACK_TITLE = (
    "[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }} {{ .CommonLabels.app }} {{ .CommonLabels.track }}"
)


def secret_path(ref: SecretRef, secrets_dir: str = SECRETS_DIR) -> str:
    """Where the mounted Secret key is read from inside the Alertmanager pod."""
    return str(PurePosixPath(secrets_dir) / ref.name / ref.key)


def secret_names(monitoring: MonitoringConfig) -> list[str]:
    """Kubernetes Secrets to mount (alertmanagerSpec.secrets), without duplicates."""
    alerting = monitoring.alerting
    refs = [alerting.email.password, alerting.slack.webhook, alerting.pagerduty.routing_key]
    return list(dict.fromkeys(ref.name for ref in refs))


def _receivers(monitoring: MonitoringConfig, secrets_dir: str) -> list[dict[str, Any]]:
    alerting = monitoring.alerting
    email = alerting.email
    return [
        {
            "name": EMAIL,
            "email_configs": [
                {
                    "to": email.to,
                    "from": email.sender,
                    "smarthost": email.smarthost,
                    "auth_username": email.username,
                    "auth_password_file": secret_path(email.password, secrets_dir),
                    "send_resolved": True,
                }
            ],
        },
        {
            "name": SLACK,
            "slack_configs": [
                {
                    "api_url_file": secret_path(alerting.slack.webhook, secrets_dir),
                    "channel": alerting.slack.channel,
                    "title": _SLACK_TITLE,
                    "text": _SLACK_TEXT,
                    "send_resolved": True,
                }
            ],
        },
        {
            "name": PAGERDUTY,
            "pagerduty_configs": [
                {
                    "routing_key_file": secret_path(alerting.pagerduty.routing_key, secrets_dir),
                    "severity": "critical",
                    "send_resolved": True,
                }
            ],
        },
    ]


def _route(monitoring: MonitoringConfig) -> dict[str, Any]:
    alerting = monitoring.alerting
    bot = f'source="{RELEASE_BOT_SOURCE}"'
    return {
        "receiver": EMAIL,
        "group_by": list(GROUP_BY),
        "group_wait": format_duration(alerting.group_wait),
        "group_interval": format_duration(alerting.group_interval),
        "repeat_interval": format_duration(alerting.repeat_interval),
        "routes": [
            {"receiver": PAGERDUTY, "matchers": ['severity="critical"'], "continue": True},
            {"receiver": SLACK, "matchers": [bot], "continue": True},
            # two routes to one receiver never both match (source= vs source!=): no duplicates
            {
                "receiver": SLACK,
                "matchers": [f'source!="{RELEASE_BOT_SOURCE}"', 'severity=~"critical|warning"'],
                "continue": True,
            },
            {"receiver": EMAIL},
        ],
    }


def render_alertmanager_config(
    monitoring: MonitoringConfig,
    secrets_dir: str = SECRETS_DIR,
    webhook_override: str | None = None,
) -> dict[str, Any]:
    """The alertmanager.yaml document.

    webhook_override: for local demos and live tests, every receiver keeps its name and place in
    the routing tree but delivers to this webhook URL instead of email/Slack/PagerDuty.
    """
    receivers = _receivers(monitoring, secrets_dir)
    if webhook_override is not None:
        if not webhook_override.startswith(("http://", "https://")):
            raise ValueError(
                f"webhook_override must be an http:// or https:// URL (got {webhook_override!r})"
            )
        receivers = [
            {"name": r["name"], "webhook_configs": [{"url": webhook_override, "send_resolved": True}]}
            for r in receivers
        ]
    return {
        "route": _route(monitoring),
        "inhibit_rules": [
            {
                "source_matchers": ['severity="critical"'],
                "target_matchers": ['severity="warning"'],
                "equal": list(INHIBIT_EQUAL),
            }
        ],
        "receivers": receivers,
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
