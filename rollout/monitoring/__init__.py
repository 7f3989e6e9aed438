"""Monitoring as code, generated from the stage model: Prometheus rules, the Alertmanager routing
tree and the Grafana dashboard.

- `alert_rules`: recording rules (one per signal) and alerts whose thresholds are the gates;
- `alertmanager_config`: receivers and routes, secrets read from mounted files;
- `dashboard`: the release dashboard (Grafana foundation SDK), threshold lines from the gates;
- `names`: the alert names, labels and annotation tags the bot and the monitoring share.

May import: `rollout.model`, `rollout.config`, `rollout.analysis`. Nothing from `release` or
`local` (tests/test_layout.py); the Pulumi component that deploys these is components/monitoring.py.
"""
