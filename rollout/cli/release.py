"""The release bot's commands: status, tick, watch, promote, rollback, preflight, report."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from rollout.cli.common import (
    AlertmanagerUrl,
    GrafanaUrl,
    ProjectDir,
    PrometheusUrl,
    PulumiRoot,
    ReportDir,
    StackName,
    _bot,
    _deployer,
    _project,
    _prometheus,
    _release,
    _run_bot_action,
    app,
    err,
    fail,
    out,
)


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
def status(
    project_dir: Optional[Path] = ProjectDir,
    stack: str = StackName,
    pulumi_root: Optional[Path] = PulumiRoot,
    prometheus: Optional[str] = PrometheusUrl,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Stage, weight, time in stage and the last verdicts (read from the stack and Prometheus)."""
    from rollout.analysis.decision import decide
    from rollout.release.bot import ReleaseBot, utcnow

    root = _project(project_dir)
    release = _release(root)
    deployer = _deployer(root, stack, pulumi_root)
    state = _run_bot_action(deployer.current)
    stage = release.stage(state.stage)
    checks = []
    if prometheus and stage.weight:
        bot = ReleaseBot(release, deployer, _prometheus(prometheus))
        checks = _run_bot_action(lambda: bot.recent_checks(stage, state.since, utcnow()))
    decision = decide(stage, state.since, utcnow(), checks,
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


def _measured_tick(bot, metrics):
    """One tick; its outcome and timing go into the bot's own metrics."""
    started = time.monotonic()
    outcome = _run_bot_action(bot.tick)
    metrics.record(outcome, time.monotonic() - started, time.time())
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
    pushgateway: Optional[str] = typer.Option(
        None, "--pushgateway", envvar="PUSHGATEWAY_URL", help="Push the bot's metrics to this Pushgateway."
    ),
) -> None:
    """One stateless decide-and-act step (for cron or CI): promote, roll back or wait."""
    from rollout.release.metrics import BotMetrics

    bot = _bot(_project(project_dir), stack, pulumi_root, prometheus, alertmanager, grafana, report_dir)
    metrics = BotMetrics(stack)
    outcome = _measured_tick(bot, metrics)
    print_outcome(outcome, as_json)
    if pushgateway:
        try:
            metrics.push(pushgateway)
        except OSError as error:  # the dead man's switch will page if this keeps failing
            err.print(f"warning: could not push the bot's metrics to the Pushgateway: {error}", highlight=False, markup=False)


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
    metrics_port: int = typer.Option(0, "--metrics-port", help="Serve the bot's metrics on this port (0: off)."),
) -> None:
    """Tick at the stage's check interval until the release completes or rolls back."""
    from rollout.release.metrics import BotMetrics

    bot = _bot(_project(project_dir), stack, pulumi_root, prometheus, alertmanager, grafana, report_dir)
    metrics = BotMetrics(stack)
    if metrics_port:
        metrics.serve(metrics_port)
    ticks = 0
    while True:
        outcome = _measured_tick(bot, metrics)
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
    daily: bool = typer.Option(False, "--daily", help="The daily status of the last 24 h, e-mailed and posted to Slack."),
    send: bool = typer.Option(True, "--send/--no-send", help="With --daily: deliver it (SMTP_PASSWORD[_FILE], SLACK_WEBHOOK_URL[_FILE])."),
) -> None:
    """Write the current stage's report (Markdown + PNG plot) from the stack and Prometheus;
    with --daily the daily status (the plan's 09:00 UTC e-mail), delivered by e-mail and Slack."""
    from rollout.release.hooks import write_stage_report

    root = _project(project_dir)
    release = _release(root)
    deployer = _deployer(root, stack, pulumi_root)
    prom = _prometheus(prometheus)
    if not daily:
        path = _run_bot_action(lambda: write_stage_report(release, deployer, prom, report_dir))
        out.print(f"report: {path}", highlight=False)
        return
    from rollout.release import daily as daily_status
    from rollout.release.bot import ReleaseBot, utcnow
    from rollout.release.notify import NotifyError

    bot = ReleaseBot(release, deployer, prom)
    status = _run_bot_action(lambda: daily_status.compose(
        release, deployer.current(), deployer.history(), bot.check, prom, utcnow()
    ))
    markdown, png = daily_status.write(status, report_dir)
    out.print(f"daily status: {markdown} ({png.name})", highlight=False)
    if send:
        try:
            for line in daily_status.deliver(status, markdown, png, release.project.monitoring.alerting.email):
                out.print(line, highlight=False)
        except NotifyError as error:
            raise fail(f"the daily status was written but not delivered: {error}")


