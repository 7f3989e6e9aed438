"""`rollout render`: one stage's desired state as files, for review and GitOps.

The Pulumi program runs under the SDK's mock runtime (rollout.review.mock_runtime) and every
Kubernetes object it declares is written as YAML, one file per object, sorted keys, stable
paths, so two renders diff cleanly. This is not a replacement for `pulumi preview`: no engine,
no provider and no live state are involved, so provider defaults and drift are not shown.

Artifact writers are a list: each gets a RenderContext and writes (and owns) one folder under
`out_dir`: manifests/, alerts/ (Prometheus rule file), alertmanager/ (alertmanager.yaml),
grafana/ (dashboards), helm/ (kube-prometheus-stack values in install mode), outputs.json.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rollout.config import load_stack_config
from rollout.model import StackConfig
from rollout.review.mock_runtime import (
    RecordedResource,
    RenderedStack,
    run_program,
    values_for_stage,
)

MANIFESTS_DIR = "manifests"
OUTPUTS_FILE = "outputs.json"
MARKER = ".rollout-render"  # marks a folder render owns: its subfolders are replaced on every render


class RenderRefused(ValueError):
    """The output folder holds files render did not write: nothing was touched."""


def claim(out_dir: Path) -> None:
    """Render only into an empty folder or one it wrote before: it replaces whole subfolders
    (alerts/, manifests/...), which in the repository itself would delete runbooks and tests."""
    if out_dir.exists() and not out_dir.is_dir():
        raise RenderRefused(f"{out_dir} is a file, not a folder")
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / MARKER).exists():
        raise RenderRefused(
            f"{out_dir} is not empty and was not written by `rollout render`: it replaces whole "
            "folders there (alerts/, manifests/, ...), so it refuses; choose an empty or new folder"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MARKER).write_text("written by `rollout render`: its folders are replaced on every render\n")


@dataclass(frozen=True)
class RenderContext:
    project_dir: Path
    stage: str
    out_dir: Path
    config: StackConfig  # validated project + stage config
    stack: RenderedStack  # what the program registered, keyed by name


ArtifactWriter = Callable[[RenderContext], list[Path]]


@dataclass(frozen=True)
class RenderResult:
    stage: str
    out_dir: Path
    files: list[Path]  # every file written, sorted
    stack: RenderedStack
    # registrations not written as files: non-Kubernetes resources (e.g. Grafana API objects)
    # and provider-side components such as helm.v4.Chart, which the Kubernetes provider
    # expands only at apply time (the mock runtime sees one opaque registration)
    skipped: list[str] = field(default_factory=list)


def fresh_dir(path: Path) -> Path:
    """Empty a writer's own folder so objects removed from the program disappear from the render."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def is_manifest(inputs: dict[str, Any]) -> bool:
    metadata = inputs.get("metadata")
    return bool(
        inputs.get("apiVersion")
        and inputs.get("kind")
        and isinstance(metadata, dict)
        and metadata.get("name")
    )


def manifest_path(inputs: dict[str, Any]) -> Path:
    """`<namespace or _cluster>/<kind>-<name>.yaml`: stable across renders and stages."""
    metadata = inputs["metadata"]
    namespace = metadata.get("namespace") or "_cluster"
    return Path(namespace) / f"{inputs['kind'].lower()}-{metadata['name']}.yaml"


class _ReadableDumper(yaml.SafeDumper):
    """Multi-line strings (the flagd flags file, embedded configs) as literal blocks, so a
    GitOps diff of a rendered manifest shows the changed line, not one escaped string."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # PyYAML falls back to a quoted scalar itself when a literal block cannot hold the text
    # (trailing spaces, control characters), so the document always loads back unchanged.
    style = "|" if "\n" in value.rstrip("\n") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_ReadableDumper.add_representer(str, _represent_str)


def to_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_ReadableDumper, sort_keys=True, default_flow_style=False, width=100)


def manifest_resources(stack: RenderedStack) -> list[RecordedResource]:
    return [r for r in stack.kubernetes_objects() if is_manifest(r.inputs)]


def write_manifests(context: RenderContext) -> list[Path]:
    folder = fresh_dir(context.out_dir / MANIFESTS_DIR)
    written: list[Path] = []
    for resource in manifest_resources(context.stack):
        path = folder / manifest_path(resource.inputs)
        if path.exists():
            raise ValueError(f"two objects render to {path}: {resource.name} and an earlier one")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# Pulumi resource {resource.name} ({resource.type})\n" + to_yaml(resource.inputs))
        written.append(path)
    return written


def write_outputs(context: RenderContext) -> list[Path]:
    path = context.out_dir / OUTPUTS_FILE
    path.write_text(json.dumps(context.stack.outputs, indent=2, sort_keys=True) + "\n")
    return [path]


def write_alert_rules(context: RenderContext) -> list[Path]:
    from rollout.monitoring.alert_rules import write_rules

    fresh_dir(context.out_dir / "alerts")
    return [write_rules(context.config, context.out_dir)]


def write_alertmanager(context: RenderContext) -> list[Path]:
    """install mode: the whole alertmanager.yaml the chart runs (existing mode contributes an
    AlertmanagerConfig object instead, written with the manifests)."""
    from rollout.monitoring.alertmanager_config import write_alertmanager_config

    fresh_dir(context.out_dir / "alertmanager")
    if context.config.project.monitoring.mode != "install":
        return []
    return [write_alertmanager_config(context.config, context.out_dir)]


def write_grafana(context: RenderContext) -> list[Path]:
    from rollout.monitoring.dashboard import write_dashboards

    fresh_dir(context.out_dir / "grafana")
    return write_dashboards(context.config, context.out_dir)


def write_helm_values(context: RenderContext) -> list[Path]:
    """The kube-prometheus-stack values (install mode): the chart itself is one opaque
    registration under the mock runtime, so its values are the reviewable part."""
    from components.monitoring import values_for

    folder = fresh_dir(context.out_dir / "helm")
    monitoring = context.config.project.monitoring
    if monitoring.mode != "install":
        return []
    path = folder / f"{monitoring.release_name}-values.yaml"
    path.write_text(
        f"# kube-prometheus-stack {monitoring.chart_version} values, generated from Pulumi.yaml monitoring\n"
        + to_yaml(values_for(monitoring))
    )
    return [path]


WRITERS: list[ArtifactWriter] = [
    write_manifests,
    write_outputs,
    write_alert_rules,
    write_alertmanager,
    write_grafana,
    write_helm_values,
]


def render(
    project_dir: Path | str,
    stage: str,
    out_dir: Path | str,
    writers: Sequence[ArtifactWriter] | None = None,
) -> RenderResult:
    """Evaluate the program for one stage file and write its artifacts under `out_dir`.

    Raises rollout.config.ConfigError (file, key path, rule) when the stage is refused, and
    RenderRefused when `out_dir` holds files render did not write.
    """
    project_dir, out_dir = Path(project_dir), Path(out_dir)
    config = load_stack_config(project_dir, stage)
    stack = run_program(values_for_stage(project_dir, stage), project_dir=project_dir)
    claim(out_dir)
    context = RenderContext(project_dir, stage, out_dir, config, stack)
    files: list[Path] = []
    for writer in WRITERS if writers is None else writers:
        files.extend(writer(context))
    written = {r.name for r in manifest_resources(stack)}
    skipped = sorted(
        name
        for name, r in stack.resources.items()
        if name not in written and (r.custom or r.type.startswith("kubernetes:"))
    )
    return RenderResult(stage, out_dir, sorted(files), stack, skipped)
