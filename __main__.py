"""Genesis rollout: one `prod` stack, one stage file per rollout step.

    pulumi up --stack prod --config-file Pulumi.<stage>.yaml

Thin on purpose: the work is in components/ (see docs/stack.md).
"""

from __future__ import annotations

from components.monitoring import MonitoringStack
from components.program import deploy_services, export_summary, read_stack_config


def main() -> None:
    config = read_stack_config()  # refuses bad config before any resource is registered
    services = deploy_services(config)
    MonitoringStack("monitoring", config)  # Prometheus/Alertmanager/Grafana, rules, dashboards

    export_summary(config, services)


main()
