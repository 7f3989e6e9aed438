"""What `__main__.py` does, as plain functions: read and validate config, declare the services.

Config is validated completely before the first resource is registered, so a bad stage file
stops `pulumi up` (and `rollout render`) with one message naming the file, key path and rule.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config

from components.weighted_service import WeightedService
from rollout.config import (
    PROJECT_FILE,
    ConfigError,
    load_release,
    parse_stack_config,
    stage_file,
)
from rollout.model import StackConfig


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


def read_stack_config(project_dir: Path | str = ".") -> StackConfig:
    """Validate this run's config, then the release plan of stage files next to Pulumi.yaml."""
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
    _check_release_plan(Path(project_dir), config)
    return config


def _check_release_plan(project_dir: Path, config: StackConfig) -> None:
    """When the stage files are here (a checkout), the whole progression must hold too."""
    if not (project_dir / PROJECT_FILE).exists():
        return
    present = [s for s in config.project.stage_order if stage_file(project_dir, s).exists()]
    if not present:
        return
    try:
        load_release(project_dir)
    except ConfigError as err:
        raise StackConfigError(err.source, err.problems) from err


def path_prefix(config: StackConfig, service_name: str) -> str:
    """One service owns the hostnames' root; several share them by path prefix `/<name>`."""
    return "/" if len(config.project.services) == 1 else f"/{service_name}"


def deploy_services(config: StackConfig) -> dict[str, WeightedService]:
    """One WeightedService per configured service, keyed by service name."""
    return {
        service.name: WeightedService(
            service.name,
            service,
            config.stage,
            config.project.routing,
            path_prefix=path_prefix(config, service.name),
        )
        for service in config.project.services
    }


def export_summary(config: StackConfig, services: dict[str, WeightedService]) -> None:
    pulumi.export("stage", config.stage.name)
    pulumi.export("weight", config.stage.weight)
    pulumi.export("router", config.project.routing.router)
    pulumi.export("services", {name: svc.summary() for name, svc in services.items()})
