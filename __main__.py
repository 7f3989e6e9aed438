"""Genesis rollout: one `prod` stack, one stage file per rollout step.

    pulumi up --stack prod --config-file Pulumi.<stage>.yaml

Thin on purpose: the work is in components/ (see docs/stack.md).
"""

from __future__ import annotations

from components.monitoring import MonitoringStack
from components.release_bot import ReleaseBot
from components.program import (
    deploy_services,
    export_summary,
    kubernetes_provider,
    read_stack_config,
    step_back_guard,
)


def main() -> None:
    config, stable_flags = read_stack_config()  # refuses bad config before any resource is registered
    # never the ambient kubeconfig context; nothing changes when this stage is a step back from
    # the deployed weight (refused: `rollout rollback`, then promote again)
    provider = kubernetes_provider(config.project.cluster, step_back_guard(config))
    services = deploy_services(config, stable_flags, provider)
    monitoring = MonitoringStack("monitoring", config, provider)  # Prometheus/Alertmanager/Grafana, rules, dashboards
    if config.project.bot.mode == "cluster":  # the release bot itself (external: the GitHub workflow)
        ReleaseBot("release-bot", config.project, provider, depends_on=[monitoring.chart] if monitoring.chart else None)

    export_summary(config, services)


main()
