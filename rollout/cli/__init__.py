"""`rollout`: the command line of the Genesis rollout stack.

Exit codes: 0 ok / pass, 1 fail (a gate breached its critical threshold), 2 hold,
3 error (bad config, Prometheus or Pulumi unreachable). Heavy modules are imported inside
commands so `rollout --help` and `rollout check` start fast.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="Progressive delivery for Genesis SPICE + Pipelex: render, plan, check, promote, roll back.",
    no_args_is_help=True,
    add_completion=False,
)
out = Console()
err = Console(stderr=True)
EXIT_ERROR = 3

ProjectDir = typer.Option(
    None, "--project-dir", "-C", help="Folder with Pulumi.yaml (default: nearest one above cwd)."
)
PrometheusUrl = typer.Option(None, "--prometheus", envvar="PROMETHEUS_URL", help="Prometheus base URL.")
AlertmanagerUrl = typer.Option(
    None, "--alertmanager", envvar="ALERTMANAGER_URL", help="Alertmanager base URL (rollback alerts)."
)
GrafanaUrl = typer.Option(None, "--grafana", envvar="GRAFANA_URL", help="Grafana base URL (annotations).")
StackName = typer.Option("prod", "--stack", envvar="PULUMI_STACK", help="The one stack holding the state.")
PulumiRoot = typer.Option(None, "--pulumi-root", help="Folder with bin/pulumi (default: PATH).")
ReportDir = typer.Option(Path("reports"), "--report-dir", help="Where incident and stage reports go.")


def find_project_dir(start: Path | None = None) -> Path:
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "Pulumi.yaml").exists():
            return folder
    raise FileNotFoundError(f"no Pulumi.yaml in {here} or above; pass --project-dir")


def fail(message: str, code: int = EXIT_ERROR) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False, markup=True)
    return typer.Exit(code)


def _project(project_dir: Optional[Path]) -> Path:
    try:
        return project_dir.resolve() if project_dir else find_project_dir()
    except FileNotFoundError as error:
        raise fail(str(error))


def _or_config_error(action):
    """Run `action`; a refused config exits 3 with the file, key path and rule."""
    from rollout.config import ConfigError

    try:
        return action()
    except ConfigError as error:
        raise fail(str(error))


def _release(project_dir: Path):
    from rollout.config import load_release

    return _or_config_error(lambda: load_release(project_dir))


def _prometheus(url: Optional[str]):
    from rollout.release.prometheus import Prometheus

    if not url:
        raise fail("no Prometheus URL: pass --prometheus or set PROMETHEUS_URL")
    return Prometheus(url)


def _deployer(project_dir: Path, stack: str, pulumi_root: Optional[Path]):
    from rollout.release.deployer import PulumiDeployer

    return PulumiDeployer(project_dir, stack, pulumi_root=pulumi_root)


def _hooks(release, alertmanager: Optional[str], grafana: Optional[str], report_dir: Path, prometheus):
    from rollout.release.hooks import default_hooks
    from rollout.release.notify import NotifyError

    try:
        return default_hooks(
            release=release, alertmanager_url=alertmanager, grafana_url=grafana,
            report_dir=report_dir, prometheus=prometheus,
        )
    except NotifyError as error:
        raise fail(str(error))


def _bot(project_dir, stack, pulumi_root, prometheus, alertmanager, grafana, report_dir):
    from rollout.release.bot import ReleaseBot

    release = _release(project_dir)
    prom = _prometheus(prometheus)
    return ReleaseBot(
        release,
        _deployer(project_dir, stack, pulumi_root),
        prom,
        hooks=_hooks(release, alertmanager, grafana, report_dir, prom),
    )


def _run_bot_action(action):
    """Run a bot action, turning adapter errors into exit code 3 with a readable message."""
    from rollout.release.deployer import DeployerError
    from rollout.release.prometheus import PrometheusError

    try:
        return action()
    except (DeployerError, PrometheusError, ValueError, KeyError) as error:
        raise fail(str(error))


# ----------------------------------------------------------------------------- rendering


def print_check(result, as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(result.to_dict()))
        return
    colour = {"pass": "green", "hold": "yellow", "fail": "red"}[result.verdict]
    table = Table(title=f"stage {result.stage}: [{colour}]{result.verdict.upper()}[/{colour}]")
    for column in ("gate", "canary", "stable", "target", "critical", "status"):
        table.add_column(column)
    for gate in result.gates:
        shown = {"pass": "green", "hold": "yellow", "fail": "red"}[gate.status]
        table.add_row(
            gate.name,
            "no data" if gate.value is None else f"{gate.value:.4g}",
            "no data" if gate.baseline is None else f"{gate.baseline:.4g}",
            f"{'<=' if gate.direction == 'max' else '>='} {gate.target:g}",
            "-" if gate.critical is None else f"{gate.critical:g}",
            f"[{shown}]{gate.status}[/{shown}]",
        )
    out.print(table)
    out.print(result.reason, highlight=False)


def print_outcome(outcome, as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(outcome.to_dict()))
        return
    state, decision = outcome.state, outcome.decision
    out.print(
        f"stage [bold]{state.stage}[/bold] ({state.weight}%) since {state.since:%Y-%m-%d %H:%M:%S}Z; "
        f"checks: {' '.join(c.verdict for c in outcome.checks) or 'none yet'}",
        highlight=False,
    )
    out.print(f"decision: [bold]{decision.action}[/bold] - {decision.reason}", highlight=False)
    if outcome.applied:
        out.print(f"applied: {outcome.applied.message}", highlight=False)
    for effect in outcome.effects:
        out.print(f"  {effect}", highlight=False)
    for warning in outcome.warnings:
        err.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)


# ----------------------------------------------------------------------------- commands


@app.command()
def check(
    stage: str = typer.Option(..., "--stage", help="Stage whose gates to apply."),
    prometheus: Optional[str] = PrometheusUrl,
    as_json: bool = typer.Option(False, "--json", help="JSON on stdout."),
    project_dir: Optional[Path] = ProjectDir,
) -> None:
    """One evaluation of every gate now. Exit 0 pass, 1 fail, 2 hold, 3 error."""
    from rollout.release.bot import check_release
    from rollout.release.prometheus import PrometheusError

    release = _release(_project(project_dir))
    try:
        target = release.stage(stage)
    except KeyError as error:
        raise fail(str(error.args[0]))
    try:
        with _prometheus(prometheus) as prom:
            result = check_release(release, prom, target)
    except PrometheusError as error:
        raise fail(f"{error} - no verdict without metrics")
    print_check(result, as_json)
    raise typer.Exit(result.exit_code)


@app.command()
def status(
    project_dir: Optional[Path] = ProjectDir,
    stack: str = StackName,
    pulumi_root: Optional[Path] = PulumiRoot,
    prometheus: Optional[str] = PrometheusUrl,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Stage, weight, time in stage and the last verdicts (read from the stack and Prometheus)."""
    from rollout.release.bot import ReleaseBot, utcnow
    from rollout.analysis.decision import decide

    root = _project(project_dir)
    release = _release(root)
    deployer = _deployer(root, stack, pulumi_root)
    state = _run_bot_action(deployer.current)
    stage = release.stage(state.stage)
    checks = []
    if prometheus and stage.weight:
        bot = ReleaseBot(release, deployer, _prometheus(prometheus))
        checks = _run_bot_action(lambda: bot.recent_checks(stage, state.since, utcnow()))
    decision = decide(stage, state.since, utcnow(), [c.verdict for c in checks],
                      last_stage=release.next_stage(stage.name) is None)
    from rollout.release.bot import TickOutcome

    print_outcome(TickOutcome(state=state, decision=decision, checks=checks), as_json)


def _bot_command(action_name: str, project_dir, stack, pulumi_root, prometheus, alertmanager,
                 grafana, report_dir, as_json, reason=None):
    bot = _bot(_project(project_dir), stack, pulumi_root, prometheus, alertmanager, grafana, report_dir)
    action = getattr(bot, action_name)
    outcome = _run_bot_action(lambda: action(reason) if reason else action())
    print_outcome(outcome, as_json)
    return outcome


@app.command()
def tick(
    project_dir: Optional[Path] = ProjectDir,
    stack: str = StackName,
    pulumi_root: Optional[Path] = PulumiRoot,
    prometheus: Optional[str] = PrometheusUrl,
    alertmanager: Optional[str] = AlertmanagerUrl,
    grafana: Optional[str] = GrafanaUrl,
    report_dir: Path = ReportDir,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """One stateless decide-and-act step (for cron or CI): promote, roll back or wait."""
    _bot_command("tick", project_dir, stack, pulumi_root, prometheus, alertmanager, grafana,
                 report_dir, as_json)


@app.command()
def watch(
    project_dir: Optional[Path] = ProjectDir,
    stack: str = StackName,
    pulumi_root: Optional[Path] = PulumiRoot,
    prometheus: Optional[str] = PrometheusUrl,
    alertmanager: Optional[str] = AlertmanagerUrl,
    grafana: Optional[str] = GrafanaUrl,
    report_dir: Path = ReportDir,
    max_ticks: int = typer.Option(0, help="Stop after this many ticks (0: until complete or rolled back)."),
) -> None:
    """Tick at the stage's check interval until the release completes or rolls back."""
    bot = _bot(_project(project_dir), stack, pulumi_root, prometheus, alertmanager, grafana, report_dir)
    ticks = 0
    while True:
        outcome = _run_bot_action(bot.tick)
        print_outcome(outcome, as_json=False)
        ticks += 1
        if outcome.decision.action in ("rollback", "complete") or (max_ticks and ticks >= max_ticks):
            return
        stage = bot.release.stage(outcome.applied.stage if outcome.applied else outcome.state.stage)
        time.sleep(stage.analysis.check_interval.total_seconds())


def _stage_change_command(action: str, default_reason: str, doc: str):
    """promote and rollback take the same options; only the bot action differs."""

    def command(
        reason: str = typer.Option(default_reason, "--reason"),
        project_dir: Optional[Path] = ProjectDir,
        stack: str = StackName,
        pulumi_root: Optional[Path] = PulumiRoot,
        prometheus: Optional[str] = PrometheusUrl,
        alertmanager: Optional[str] = AlertmanagerUrl,
        grafana: Optional[str] = GrafanaUrl,
        report_dir: Path = ReportDir,
    ) -> None:
        _bot_command(action, project_dir, stack, pulumi_root, prometheus, alertmanager, grafana,
                     report_dir, False, reason)

    command.__doc__ = doc
    return command


app.command("promote")(
    _stage_change_command(
        "promote", "promoted by hand", "Apply the next stage now (a human decision: gates are not consulted)."
    )
)
app.command("rollback")(
    _stage_change_command(
        "rollback", "rolled back by hand",
        "Apply the rollback target (stable: SPICE and Pipelex off, fallback on) now.",
    )
)


@app.command()
def preflight(
    project_dir: Optional[Path] = ProjectDir,
    prometheus: Optional[str] = PrometheusUrl,
    alertmanager: Optional[str] = AlertmanagerUrl,
    grafana: Optional[str] = GrafanaUrl,
    skip: list[str] = typer.Option([], "--skip", help="Item to skip on purpose (repeatable)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The Day-0 go/no-go list. Exit 0 when every item is go."""
    from rollout.release.preflight import run_preflight

    try:
        items = run_preflight(_project(project_dir), prometheus, alertmanager, grafana, skip)
    except ValueError as error:
        raise fail(str(error))
    if as_json:
        out.print_json(json.dumps([item.to_dict() for item in items]))
    else:
        table = Table(title="preflight")
        table.add_column("check")
        table.add_column("result")
        table.add_column("detail")
        for item in items:
            table.add_row(item.name, "[green]go[/green]" if item.ok else "[red]no-go[/red]", item.detail)
        out.print(table)
    raise typer.Exit(0 if all(item.ok for item in items) else 1)


@app.command()
def report(
    project_dir: Optional[Path] = ProjectDir,
    stack: str = StackName,
    pulumi_root: Optional[Path] = PulumiRoot,
    prometheus: Optional[str] = PrometheusUrl,
    report_dir: Path = ReportDir,
) -> None:
    """Write the current stage's report (Markdown + PNG plot) from the stack and Prometheus."""
    from rollout.release.hooks import write_stage_report

    root = _project(project_dir)
    release = _release(root)
    deployer = _deployer(root, stack, pulumi_root)
    prom = _prometheus(prometheus)
    path = _run_bot_action(lambda: write_stage_report(release, deployer, prom, report_dir))
    out.print(f"report: {path}", highlight=False)


@app.command()
def render(
    stage: str = typer.Option(..., "--stage"),
    out_dir: Path = typer.Option(..., "--out"),
    project_dir: Optional[Path] = ProjectDir,
) -> None:
    """Write a stage's desired state: manifests/, alerts/, alertmanager/, grafana/ (review, GitOps)."""
    from rollout.review.render import render as render_stage

    result = _or_config_error(lambda: render_stage(_project(project_dir), stage, out_dir))
    folders: dict[str, int] = {}
    for path in result.files:
        parts = path.relative_to(result.out_dir).parts
        top = f"{parts[0]}/" if len(parts) > 1 else parts[0]
        folders[top] = folders.get(top, 0) + 1
    summary = ", ".join(f"{name} {count}" for name, count in sorted(folders.items()))
    out.print(f"rendered stage {stage} into {out_dir}: {summary}", highlight=False, soft_wrap=True)


@app.command()
def plan(
    from_stage: str = typer.Argument(..., metavar="FROM"),
    to_stage: str = typer.Argument(..., metavar="TO"),
    markdown: bool = typer.Option(False, "--markdown", help="Markdown for a pull-request comment."),
    project_dir: Optional[Path] = ProjectDir,
) -> None:
    """Resource-level diff between two stages' desired states (review aid, not `pulumi preview`)."""
    from rollout.review.plan import plan as plan_stages

    result = _or_config_error(lambda: plan_stages(_project(project_dir), from_stage, to_stage))
    sys.stdout.write(result.to_markdown() if markdown else result.to_text())
    sys.stdout.write("\n")


@app.command()
def demo(
    out_dir: Path = typer.Option(Path("demo-out"), "--out", help="Where the report, plot and logs go."),
    project_dir: Optional[Path] = ProjectDir,
    fault_stage: str = typer.Option("majority", help="Stage at which the canary turns bad."),
    check_seconds: float = typer.Option(2.0, help="Compressed check interval."),
    hold_seconds: float = typer.Option(12.0, help="Compressed hold per stage."),
) -> None:
    """The whole loop on one machine: real Prometheus + Alertmanager, synthetic Genesis, the bot."""
    from rollout.local.demo import DemoError, run_demo

    logging.basicConfig(level=logging.WARNING)
    try:
        summary = run_demo(
            _project(project_dir), out_dir, fault_stage=fault_stage,
            check_seconds=check_seconds, hold_seconds=hold_seconds, console=out,
        )
    except DemoError as error:
        raise fail(str(error))
    raise typer.Exit(0 if summary.ok else 1)


def main() -> None:  # pragma: no cover - console entry point
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()
