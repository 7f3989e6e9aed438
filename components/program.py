"""What `__main__.py` does, as plain functions: read and validate config, declare the services.

Config is validated completely before the first resource is registered, so a bad stage file
stops `pulumi up` (and `rollout render`) with one message naming the file, key path and rule.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
from pulumi.runtime import config as runtime_config

from components.weighted_service import WeightedService
from rollout.config import (
    PROJECT_FILE,
    ConfigError,
    load_release,
    parse_stack_config,
    stage_file,
)
from rollout.model import ClusterConfig, FeatureFlags, StackConfig, step_back_problem


class StackConfigError(ConfigError, pulumi.RunError):
    """A ConfigError that Pulumi reports as a clean message (RunError), not a traceback."""


def _parse(value: Any) -> Any:
    # The CLI hands every value over as a string, objects and lists as JSON text.
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def raw_config(namespace: str) -> tuple[dict[str, Any], list[str]]:
    """Every config value of this project as {bare key: value}, and the keys marked secret.

    pulumi.Config only answers for keys you name; to refuse unknown keys the program has to see
    them all: the CLI passes them in PULUMI_CONFIG, the mock runtime through set_all_config.
    """
    merged = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    secret_keys = set(runtime_config.get_config_secret_keys_env())
    values: dict[str, Any] = {}
    secrets: list[str] = []
    for key, value in merged.items():
        prefix, _, bare = key.partition(":")
        if prefix != namespace or not bare:
            continue  # other namespaces (kubernetes:, pulumi:) are not ours to judge
        values[bare] = _parse(value)
        if key in secret_keys or runtime_config.is_config_secret(key):
            secrets.append(bare)
    return values, sorted(secrets)


def stage_source(values: dict[str, Any]) -> str:
    """The stage file the values most likely came from, for error messages."""
    stage = values.get("stage")
    name = stage.get("name") if isinstance(stage, dict) else None
    if isinstance(name, str) and name:
        return stage_file(Path("."), name).name
    return "the stage file given with --config-file"


def read_stack_config(project_dir: Path | str = ".") -> tuple[StackConfig, FeatureFlags]:
    """Validate this run's config and the release plan of stage files next to Pulumi.yaml.

    Returns the config and the stable track's flags: those of the rollback target's stage file,
    which the stable pods read at every stage so the stable track stays a baseline.
    """
    namespace = pulumi.get_project()
    values, secrets = raw_config(namespace)
    source = stage_source(values)
    if secrets:
        raise StackConfigError(
            source,
            [
                f"{namespace}:{key}: is a secret; stage files hold no secrets - keep it in a "
                "Kubernetes Secret and reference it by name (SecretRef)"
                for key in secrets
            ],
        )
    try:
        config = parse_stack_config(values, namespace, source, PROJECT_FILE)
    except ConfigError as err:
        raise StackConfigError(err.source, err.problems) from err
    stable_flags = _stable_flags(Path(project_dir), config)
    if config.project.monitoring.mode == "install" and not under_mocks():
        check_vendored_chart(config.project.monitoring.chart_version)
    return config, stable_flags


def under_mocks() -> bool:
    """True under the Pulumi SDK's mock runtime (`rollout render`, `rollout plan`, the tests):
    nothing reads the chart there (mocks never expand a provider-side Chart), so its archive is
    not required; a real engine (`pulumi up`, `pulumi preview`) always checks it."""
    from pulumi.runtime.mocks import MockMonitor
    from pulumi.runtime.settings import SETTINGS

    return isinstance(SETTINGS.monitor, MockMonitor)


def check_vendored_chart(version: str, lock_file: Path | None = None) -> Path:
    """The vendored chart archive, digest checked, or a StackConfigError naming the file and the
    command that fixes it (before any resource is registered)."""
    from rollout.monitoring.chart import LOCK_FILE, ChartError, verified_archive

    lock = lock_file or LOCK_FILE
    try:
        return verified_archive(version, lock)
    except ChartError as err:
        raise StackConfigError(f"charts/{lock.name}", [str(err)]) from err


def _stable_flags(project_dir: Path, config: StackConfig) -> FeatureFlags:
    """The rollback target's flags, from the whole release plan (which must hold too)."""
    order = config.project.stage_order
    missing = [stage_file(project_dir, s).name for s in order if not stage_file(project_dir, s).exists()]
    if missing or not (project_dir / PROJECT_FILE).exists():
        raise StackConfigError(
            missing[0] if missing else PROJECT_FILE,  # the file that is not there, not the one that needs it
            [
                f"the stable track reads the rollback target's flags, so every stage file of "
                f"stageOrder must sit next to {PROJECT_FILE} in {project_dir.resolve()}; missing: "
                f"{', '.join(missing) or PROJECT_FILE}"
            ],
        )
    try:
        release = load_release(project_dir)
    except ConfigError as err:
        raise StackConfigError(err.source, err.problems) from err
    return release.rollback_target.flags


def deployed_weight() -> pulumi.Output[Any]:
    """The canary weight the stack's last update exported (None on the first update): this
    stack's own outputs, read through a StackReference to itself (a stack may read back its own
    outputs this way: pulumi/pulumi#3722)."""
    name = f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}"
    # outputs is None when the stack has none yet (and under the mock runtime)
    return pulumi.StackReference(name).outputs.apply(lambda outputs: (outputs or {}).get("weight"))


def step_back_guard(config: StackConfig) -> pulumi.Output[None]:
    """Resolves when applying this stage is not a step back from the deployed weight, and fails
    the update otherwise. Every Kubernetes resource waits on it through the provider, so a
    refused step back changes nothing in the cluster."""

    def check(weight: Any) -> None:
        deployed = int(weight) if isinstance(weight, (int, float)) else None
        problem = step_back_problem(config.project.stage_order[0], deployed, config.stage)
        if problem:
            raise StackConfigError(stage_file(Path("."), config.stage.name).name, [problem])

    return deployed_weight().apply(check)


def kubernetes_provider(cluster: ClusterConfig, guard: pulumi.Output[None] | None = None) -> k8s.Provider:
    """The one provider every Kubernetes resource uses: the cluster named in config, never the
    ambient kubeconfig context; ConfigMaps updated in place so a flags change reaches running
    pods (the default replaces a ConfigMap whose data changes). With `guard`, the provider (and
    so every Kubernetes resource) is registered only once the guard resolved."""
    context = cluster.context if guard is None else guard.apply(lambda _: cluster.context)
    return k8s.Provider(
        "kubernetes",
        context=context,
        kubeconfig=cluster.kubeconfig,
        enable_config_map_mutable=True,
        enable_server_side_apply=True,
    )


def path_prefix(config: StackConfig, service_name: str) -> str:
    """One service owns the hostnames' root; several share them by path prefix `/<name>`."""
    return "/" if len(config.project.services) == 1 else f"/{service_name}"


def deploy_services(
    config: StackConfig, stable_flags: FeatureFlags, provider: pulumi.ProviderResource
) -> dict[str, WeightedService]:
    """One WeightedService per configured service, keyed by service name."""
    return {
        service.name: WeightedService(
            service.name,
            service,
            config.stage,
            stable_flags,
            config.project.routing,
            provider,
            path_prefix=path_prefix(config, service.name),
        )
        for service in config.project.services
    }


def export_summary(config: StackConfig, services: dict[str, WeightedService]) -> None:
    pulumi.export("stage", config.stage.name)
    pulumi.export("weight", config.stage.weight)
    pulumi.export("router", config.project.routing.router)
    pulumi.export("services", {name: svc.summary() for name, svc in services.items()})
