"""Review aids: render and plan (the program under the Pulumi mock runtime), replay and export
(recorded metrics through the unchanged gates)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from rollout.cli.common import (
    JsonOutput,
    ProjectDir,
    PrometheusUrl,
    StackName,
    _or_config_error,
    _project,
    _prometheus,
    app,
    err,
    fail,
    parse_time,
    stopped_by_sigterm,
    writable_file,
    say,
)


@app.command()
def render(
    stage: str = typer.Option(..., "--stage", help="The stage whose desired state to write."),
    out_dir: Path = typer.Option(..., "--out", help="The folder to write it into."),
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
    from_stage: str = typer.Argument(..., metavar="FROM", help="The stage the stack is at."),
    to_stage: str = typer.Argument(..., metavar="TO", help="The stage to change to."),
    markdown: bool = typer.Option(False, "--markdown", help="Markdown for a pull-request comment."),
    as_json: bool = typer.Option(
        False, "--json", help="One JSON object: from, to, router, phases (name, wait_seconds, targets, changes), diff."
    ),
    project_dir: Optional[Path] = ProjectDir,
    stack: str = StackName,
) -> None:
    """The order of a stage change and the resource diff between two stages (review aid).

    Prints the change's phases with their exact commands, then the resource-level diff between
    the two stages' desired states. TO may be `complete` (from the last stage): the completion
    of the release. Not `pulumi preview`: no engine, no live state. Exit 0, or 3 with an error."""
    import json

    from rollout.review.plan import plan as plan_stages

    # an error is {"error": ..., "exit": 3} under --json, as for every command (cli/__init__.py)
    result = _or_config_error(lambda: plan_stages(_project(project_dir), from_stage, to_stage, stack))
    if as_json:
        sys.stdout.write(json.dumps(result.to_json()) + "\n")
        return
    sys.stdout.write(result.to_markdown() if markdown else result.to_text())
    sys.stdout.write("\n")




@app.command()
def replay(
    metrics: Path = typer.Option(..., "--metrics", help="OpenMetrics file (timestamps in seconds, ending in # EOF)."),
    start: str = typer.Option(..., "--start", help="When the stage was applied: RFC 3339 or unix seconds."),
    end: Optional[str] = typer.Option(None, "--end", help="Default: the last sample."),
    stage: Optional[str] = typer.Option(None, "--stage", help="A stage of the project (its stage file)."),
    policy: Optional[Path] = typer.Option(None, "--policy", help="A file in the stage-file schema instead."),
    as_json: bool = JsonOutput,
    plot_file: Optional[Path] = typer.Option(None, "--plot", help="Also write a PNG of the replay."),
    project_dir: Optional[Path] = ProjectDir,
) -> None:
    """What the bot would have decided over recorded metrics, at the stage's real timing.

    Backfills the file into a real Prometheus with the stage's recording rules, then runs the
    unchanged gates and decision at every check instant from --start, stopping at the first
    rollback, promote or complete. Exit 0 when the replay ran (whatever it decided), 3 on an error."""
    import json

    from rollout.config import load_policy_file, load_stack_config
    from rollout.review.backfill import BackfillError
    from rollout.review.openmetrics import OpenMetricsError
    from rollout.review.replay import ReplayError, calibration, plot, timeline
    from rollout.review.replay import replay as run_replay

    if (stage is None) == (policy is None):
        raise fail("give exactly one of --stage NAME and --policy STAGE_FILE")
    root = _project(project_dir)
    last_stage = None
    if stage is not None:
        config = _or_config_error(lambda: load_stack_config(root, stage))
        last_stage = config.stage.name == config.project.stage_order[-1]
    else:
        config = _or_config_error(lambda: load_policy_file(root, policy))
    started = parse_time(start, "--start")
    ended = None if end is None else parse_time(end, "--end")
    if plot_file is not None:
        writable_file(plot_file, "--plot")  # before minutes of work, not after
    try:
        with stopped_by_sigterm():
            result = run_replay(metrics, config, started, ended, last_stage=last_stage,
                                progress=lambda line: say(line, console=err))
    except (ReplayError, OpenMetricsError, BackfillError) as error:
        raise fail(str(error))
    if plot_file is not None:
        try:
            plot(result, plot_file)
        except OSError as error:
            raise fail(f"--plot: cannot write {plot_file}: {error.strerror or error}")
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict()) + "\n")
        return
    for line in timeline(result):
        say(line)
    for line in calibration(result):
        say(line)
    spent = ", ".join(f"{step} {seconds:.1f}s" for step, seconds in result.seconds.items())
    say(f"{len(result.checks)} checks, {result.queries} queries; {spent}", console=err)


@app.command()
def export(
    prometheus: Optional[str] = PrometheusUrl,
    start: str = typer.Option(..., "--start", help="RFC 3339 or unix seconds."),
    end: str = typer.Option(..., "--end", help="RFC 3339 or unix seconds."),
    out_file: Path = typer.Option(..., "--out", help="The OpenMetrics file to write."),
    project_dir: Optional[Path] = ProjectDir,
) -> None:
    """Write the project's raw metrics between two times as an OpenMetrics file for `replay`."""
    from rollout.config import load_stack_config
    from rollout.release.prometheus import PrometheusError
    from rollout.review.export import export as export_metrics

    root = _project(project_dir)
    config = _or_config_error(lambda: load_stack_config(root, config_stage(root)))
    started, ended = parse_time(start, "--start"), parse_time(end, "--end")
    writable_file(out_file, "--out")
    try:
        with _prometheus(prometheus) as prom:
            report = export_metrics(prom, config.project.services, started, ended, out_file)
    except (PrometheusError, ValueError) as error:
        raise fail(str(error))
    except OSError as error:
        raise fail(f"--out: cannot write {out_file}: {error.strerror or error}")
    say(f"wrote {report.samples} samples of {report.series} series ({', '.join(report.families)}) to {out_file}")


def config_stage(root: Path) -> str:
    """Any stage: export needs only the project's services."""
    from rollout.config import project_defaults

    return (project_defaults(root).get("stageOrder") or ["stable"])[0]
