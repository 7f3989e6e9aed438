"""Helpers for the stack tests: renders of the repository's stage files (cached, they are
pure functions of the files) and temp copies of the project to break on purpose."""

from __future__ import annotations

import copy
import functools
import re
import shutil
from pathlib import Path
from typing import Any

import yaml

from rollout.model import STAGE_ORDER
from rollout.review.mock_runtime import (
    RecordingMocks,
    RenderedStack,
    run_program,
    values_for_stage,
)
from support import REPO_ROOT

NAMESPACE = "genesis-rollout"
STAGES = STAGE_ORDER


@functools.cache
def rendered(stage: str) -> RenderedStack:
    """The repository's stage file under the mock runtime (do not mutate the result)."""
    return run_program(values_for_stage(REPO_ROOT, stage))


def stage_values(stage: str) -> dict[str, Any]:
    """A deep copy of the merged config values of a repository stage file, free to edit."""
    return copy.deepcopy(values_for_stage(REPO_ROOT, stage))


def set_path(values: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Set 'services[0].stable.image'-style paths in bare config values; returns `values`."""
    parts = [int(p) if p.isdigit() else p for p in re.findall(r"[^.\[\]]+", path)]
    target: Any = values
    for part in parts[:-1]:
        target = target[part]
    target[parts[-1]] = value
    return values


def delete_path(values: dict[str, Any], path: str) -> dict[str, Any]:
    parts = [int(p) if p.isdigit() else p for p in re.findall(r"[^.\[\]]+", path)]
    target: Any = values
    for part in parts[:-1]:
        target = target[part]
    del target[parts[-1]]
    return values


def run_values(values: dict[str, Any], project_dir: Path = REPO_ROOT, mocks: RecordingMocks | None = None) -> RenderedStack:
    return run_program(values, project_dir=project_dir, mocks=mocks)


def copy_project(tmp_path: Path) -> Path:
    """Pulumi.yaml and every stage file in a temp directory (the program is still the repo's)."""
    project = tmp_path / "project"
    project.mkdir()
    for path in REPO_ROOT.glob("Pulumi*.yaml"):
        shutil.copy(path, project / path.name)
    return project


def edit_stage_file(project: Path, stage: str, key: str, value: Any) -> Path:
    """Replace one top-level config key ('genesis-rollout:<key>') of a stage file."""
    path = project / f"Pulumi.{stage}.yaml"
    data = yaml.safe_load(path.read_text())
    data["config"][f"{NAMESPACE}:{key}"] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def edit_project_config(project: Path, key: str, **fields: Any) -> Path:
    """Set fields of one config value of Pulumi.yaml ('genesis-rollout:<key>'), e.g. routing's
    scaleDownDelay."""
    path = project / "Pulumi.yaml"
    data = yaml.safe_load(path.read_text())
    data["config"][f"{NAMESPACE}:{key}"]["value"].update(fields)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def compressed_project(tmp_path: Path, analysis: dict[str, Any], **bot: Any) -> Path:
    """A project copy with every stage's analysis replaced (compressed as a live Prometheus's
    rules are) and 1 s scale-down and flags waits, so the phases do not wait 30 s and 75 s;
    `bot`: fields of the bot's config (metricsPort=...)."""
    project = copy_project(tmp_path)
    for stage in STAGES:
        edit_stage_file(project, stage, "analysis", analysis)
    edit_project_config(project, "routing", scaleDownDelay="1s", flagsPropagation="1s")
    if bot:
        edit_project_config(project, "bot", **bot)
    return project


def objects(stack: RenderedStack) -> list[dict[str, Any]]:
    return [r.inputs for r in stack.kubernetes_objects()]


def weighted_rule(route: dict[str, Any]) -> dict[str, Any]:
    """The HTTPRoute rule that splits by weight (the header rule, when present, comes first)."""
    (rule,) = [r for r in route["spec"]["rules"] if not any("headers" in m for m in r["matches"])]
    return rule


def route_weights(stack: RenderedStack, service: str = "genesis") -> dict[str, int]:
    """Track -> weight from the service's HTTPRoute."""
    refs = weighted_rule(stack.resources[f"{service}-httproute"].inputs)["backendRefs"]
    return {ref["name"].removeprefix(f"{service}-"): ref["weight"] for ref in refs}


def with_router(stage: str, router: str, **routing: Any) -> RenderedStack:
    """A repository stage rendered with another router (and routing settings)."""
    values = stage_values(stage)
    values["routing"] = {**values["routing"], "router": router, **routing}
    return run_values(values)
