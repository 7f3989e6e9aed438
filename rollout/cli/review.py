"""Review aids that run the program under the Pulumi mock runtime: render and plan."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from rollout.cli.common import (
    ProjectDir,
    StackName,
    _or_config_error,
    _project,
    app,
    fail,
    say,
)


@app.command()
def render(
    stage: str = typer.Option(..., "--stage"),
    out_dir: Path = typer.Option(..., "--out"),
    project_dir: Optional[Path] = ProjectDir,
) -> None:
    """Write a stage's desired state: manifests/, alerts/, alertmanager/, grafana/ (review, GitOps)."""
    from rollout.review.render import RenderRefused
    from rollout.review.render import render as render_stage

    try:
        result = _or_config_error(lambda: render_stage(_project(project_dir), stage, out_dir))
    except RenderRefused as error:
        raise fail(str(error))
    folders: dict[str, int] = {}
    for path in result.files:
        parts = path.relative_to(result.out_dir).parts
        top = f"{parts[0]}/" if len(parts) > 1 else parts[0]
        folders[top] = folders.get(top, 0) + 1
    summary = ", ".join(f"{name} {count}" for name, count in sorted(folders.items()))
    say(f"rendered stage {stage} into {out_dir}: {summary}")


@app.command()
def plan(
    from_stage: str = typer.Argument(..., metavar="FROM"),
    to_stage: str = typer.Argument(..., metavar="TO"),
    markdown: bool = typer.Option(False, "--markdown", help="Markdown for a pull-request comment."),
    project_dir: Optional[Path] = ProjectDir,
    stack: str = StackName,
) -> None:
    """The order of a stage change and the resource diff between two stages (review aid).

    Prints the change's phases with their exact commands, then the resource-level diff between
    the two stages' desired states. Not `pulumi preview`: no engine, no live state."""
    from rollout.review.plan import plan as plan_stages

    result = _or_config_error(lambda: plan_stages(_project(project_dir), from_stage, to_stage, stack))
    sys.stdout.write(result.to_markdown() if markdown else result.to_text())
    sys.stdout.write("\n")


