"""The release bot's commands: tick, watch, promote, rollback, pause, resume, approve,
preflight, report (status: rollout/cli/status.py).

Exit codes: 0 done (whatever the decision), 3 error (nothing applied, or a rollback that could
not be applied: it is paged and reported), 4 applied but not everyone could be told (the next
tick tells them again).
"""

from __future__ import annotations

import inspect
import json
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table
from rich.text import Text

from rollout.cli.common import (
    EXIT_NOT_NOTIFIED,
    AlertmanagerUrl,
    GrafanaUrl,
    JsonOutput,
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
    clean,
    err,
    fail,
    out,
    redacted,
    say,
)


def print_outcome(outcome, as_json: bool) -> None:
    if as_json:
        return _print_json(outcome.to_dict())
    state, decision = outcome.state, outcome.decision
    say("stage ", (state.stage, "bold"), f" ({state.weight}%) since {state.since:%Y-%m-%d %H:%M:%S}Z; "
        f"checks: {' '.join(c.verdict for c in outcome.checks) or 'none yet'}")
    say("decision: ", (decision.action, "bold"), f" - {decision.reason}")
    if outcome.applied:
        say(f"applied: {outcome.applied.message}")
    for effect in outcome.effects:
        say(f"  {effect}")
    for warning in outcome.warnings:
        say(("warning: ", "yellow"), warning, console=err)
    if outcome.notified is False:
        say(("not notified: ", "yellow"), "the change is applied; the next tick tells everyone again", console=err)


def _print_json(data: dict) -> None:
    out.print_json(json.dumps(redacted(data)))


def _exit_for(outcome) -> None:
    """Applied but not told: its own exit code, so a scheduler shows it."""
    if outcome.notified is False:
        raise typer.Exit(EXIT_NOT_NOTIFIED)


# ----------------------------------------------------------------------------- the bot


@dataclass(frozen=True)
class BotOptions:
    project_dir: Optional[Path]
    stack: str
    pulumi_root: Optional[Path]
    prometheus: Optional[str]
    alertmanager: Optional[str]
    grafana: Optional[str]
    report_dir: Path

    def bot(self):
        return _bot(_project(self.project_dir), self.stack, self.pulumi_root, self.prometheus,
                    self.alertmanager, self.grafana, self.report_dir)


_BOT_PARAMETERS = [
    inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind)
    for name, default, kind in (
        ("project_dir", ProjectDir, Optional[Path]),
        ("stack", StackName, str),
        ("pulumi_root", PulumiRoot, Optional[Path]),
        ("prometheus", PrometheusUrl, Optional[str]),
        ("alertmanager", AlertmanagerUrl, Optional[str]),
        ("grafana", GrafanaUrl, Optional[str]),
        ("report_dir", ReportDir, Path),
    )
]


def bot_command(name: str):
    """Register `body(options: BotOptions, **own)` as a command taking the bot's options (declared
    once here) and the body's own keyword options."""

    def register(body):
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
               for p in list(inspect.signature(body, eval_str=True).parameters.values())[1:]]

        def command(**kwargs):
            options = BotOptions(**{p.name: kwargs.pop(p.name) for p in _BOT_PARAMETERS})
            return body(options, **kwargs)

        command.__signature__ = inspect.Signature([*_BOT_PARAMETERS, *own])  # type: ignore[attr-defined]
        command.__doc__ = body.__doc__
        command.__name__ = body.__name__
        app.command(name)(command)
        return body

    return register


@bot_command("tick")
def tick(
    options: BotOptions,
    as_json: bool = JsonOutput,
    pushgateway: Optional[str] = typer.Option(
        None, "--pushgateway", envvar="PUSHGATEWAY_URL", help="Push the bot's metrics to this Pushgateway."
    ),
) -> None:
    """One stateless decide-and-act step (for cron or CI): promote, roll back or wait.

    Exit 0 done (or nothing to do), 3 on an error (nothing was applied unless it says so),
    4 when a change was applied but not everyone could be told."""
    from rollout.release.deployer import StackLockedError
    from rollout.release.metrics import BotMetrics
    from rollout.release.watch import observe_tick

    bot = options.bot()
    metrics = BotMetrics(options.stack, bot.release)

    def push() -> None:
        if not pushgateway:
            return
        try:
            metrics.push(pushgateway)
        except OSError as error:  # the dead man's switch will page if this keeps failing
            say(("warning: ", "yellow"), f"could not push the bot's metrics to the Pushgateway: {error}", console=err)

    def observed_tick():
        try:
            return observe_tick(bot.tick, metrics.record, metrics.record_lock)
        except StackLockedError:  # a tick keeps no memory: GenesisStackLocked's `for:` counts how long
            push()
            raise

    outcome = _run_bot_action(observed_tick)
    print_outcome(outcome, as_json)
    push()
    _exit_for(outcome)


def _report_tick(outcome, as_json: bool) -> None:
    if as_json:  # one line per tick, so a reader can follow it as it comes
        out.print(json.dumps(redacted(outcome.to_dict())), soft_wrap=True, markup=False, highlight=False)
    else:
        print_outcome(outcome, as_json=False)


@bot_command("watch")
def watch(
    options: BotOptions,
    max_ticks: int = typer.Option(0, help="Stop after this many ticks (0: no limit)."),
    metrics_port: int = typer.Option(0, "--metrics-port", help="Serve the bot's metrics on this port (0: off)."),
    forever: bool = typer.Option(
        False, "--forever",
        help="Keep ticking after a rollback or completion, and retry errors at the next check (the in-cluster bot).",
    ),
    leader_elect: bool = typer.Option(
        False, "--leader-elect",
        help="Tick only while holding the coordination.k8s.io Lease (in a pod: its ServiceAccount and namespace).",
    ),
    lease_name: str = typer.Option("genesis-rollout-bot", "--lease-name", help="The Lease to hold with --leader-elect."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per tick on stdout (JSON Lines); "
                                 'errors as {"error": ..., "exit": N}.'),
) -> None:
    """Tick at the stage's check instants until the release completes or rolls back (or, with
    --forever, until SIGTERM: a tick in flight is finished first).

    Exit 0, 3 on an error, 4 when a change was applied but not everyone could be told."""
    import os
    import signal
    import socket

    from rollout.release.metrics import BotMetrics
    from rollout.release.watch import Watcher

    bot = options.bot()
    metrics = BotMetrics(options.stack, bot.release)
    if metrics_port:
        metrics.serve(metrics_port)
    elector = None
    if leader_elect:
        from rollout.release.lease import KubeLeaseApi, LeaderElector, LeaseError

        try:
            # in a pod HOSTNAME is the pod's name: the Lease shows which pod leads
            identity = os.environ.get("HOSTNAME") or socket.gethostname()
            elector = LeaderElector(KubeLeaseApi.in_cluster(lease_name), identity)
        except (LeaseError, OSError) as error:
            raise fail(str(error))
    watcher = Watcher(
        release=bot.release, tick=bot.tick, record=metrics.record, record_lock=metrics.record_lock,
        report=lambda outcome: _report_tick(outcome, as_json),
        report_error=lambda error: say(("error: ", "red"), str(error), console=err),
        probe=bot.deployer, elector=elector, forever=forever, max_ticks=max_ticks,
    )

    def stop(signum, _frame) -> None:  # finish the tick in flight, hand the lease back, exit 0
        say(f"signal {signum}: stopping after the tick in flight", console=err)
        watcher.stop.set()

    signal.signal(signal.SIGTERM, stop)
    code = watcher.run()
    if code:
        raise typer.Exit(code)


@bot_command("promote")
def promote(
    options: BotOptions,
    reason: str = typer.Option("promoted by hand", "--reason", help="Why, for the stack history and the notices."),
    as_json: bool = JsonOutput,
) -> None:
    """Apply the next stage now: a human decision (gates, pause and hours are not consulted).

    Refused if the stack changed since it was read."""
    outcome = _run_bot_action(lambda: options.bot().promote(reason))
    print_outcome(outcome, as_json)
    _exit_for(outcome)


@bot_command("rollback")
def rollback(
    options: BotOptions,
    reason: str = typer.Option("rolled back by hand", "--reason", help="Why, for the stack history, the page and the incident report."),
    force: bool = typer.Option(False, "--force", help="Apply the rollback target even when the stack is at it already."),
    as_json: bool = JsonOutput,
) -> None:
    """Apply the rollback target now (stable: SPICE and Pipelex off, fallback on).

    Refused if the stack changed since it was read. At the rollback target already it does
    nothing (no second page) unless --force."""
    outcome = _run_bot_action(lambda: options.bot().rollback(reason, force=force))
    print_outcome(outcome, as_json)
    _exit_for(outcome)


# ----------------------------------------------------------------------------- operators


def _tags(project_dir, stack, pulumi_root):
    root = _project(project_dir)
    return _release(root), _deployer(root, stack, pulumi_root)


@app.command()
def pause(
    reason: str = typer.Option(..., "--reason", help="Why, for whoever reads `rollout status`."),
    project_dir: Optional[Path] = ProjectDir,
    stack: str = StackName,
    pulumi_root: Optional[Path] = PulumiRoot,
    as_json: bool = JsonOutput,
) -> None:
    """Stop automatic promotion (automatic rollback continues). Noted on the stack, with who and why."""
    from rollout.release.bot import utcnow
    from rollout.release.controls import PAUSED_TAG, stamp, who

    _, deployer = _tags(project_dir, stack, pulumi_root)
    value = stamp(who(), utcnow(), reason)
    _run_bot_action(lambda: deployer.set_tag(PAUSED_TAG, value))
    if as_json:
        return _print_json({"action": "pause", "paused": value})
    say(f"paused {value}: the bot will not promote; it still rolls back")


@app.command()
def resume(
    project_dir: Optional[Path] = ProjectDir,
    stack: str = StackName,
    pulumi_root: Optional[Path] = PulumiRoot,
    as_json: bool = JsonOutput,
) -> None:
    """Let the bot promote again."""
    from rollout.release.controls import PAUSED_TAG

    _, deployer = _tags(project_dir, stack, pulumi_root)
    state = _run_bot_action(deployer.current)
    was = state.tags.get(PAUSED_TAG)
    if was is not None:
        _run_bot_action(lambda: deployer.remove_tag(PAUSED_TAG))
    if as_json:
        return _print_json({"action": "resume", "was_paused": was})
    say("not paused" if was is None else f"resumed (was paused {was})")


@app.command()
def approve(
    stage: str = typer.Argument(..., metavar="STAGE", help="The stage to let the bot promote into (the next one)."),
    project_dir: Optional[Path] = ProjectDir,
    stack: str = StackName,
    pulumi_root: Optional[Path] = PulumiRoot,
    as_json: bool = JsonOutput,
) -> None:
    """Approve promotion into STAGE (stages with analysis.approval: required).

    The approval holds for the stack as it is now: a later update (a promotion, a rollback)
    makes it stale."""
    from rollout.release.bot import utcnow
    from rollout.release.controls import approval_tag, approval_value, who

    release, deployer = _tags(project_dir, stack, pulumi_root)
    try:
        target = release.stage(stage)
    except KeyError as error:
        raise fail(str(error.args[0]))
    if target.analysis.approval != "required":
        raise fail(f"stage '{stage}' does not need an approval (its analysis.approval is '{target.analysis.approval}')")
    state = _run_bot_action(deployer.current)
    upcoming = release.next_stage(state.stage)
    if upcoming is None or upcoming.name != stage:
        raise fail(f"the stack is at '{state.stage}': the next stage is {upcoming.name if upcoming else 'none'}, not '{stage}'")
    value = approval_value(state.head_version, who(), utcnow())
    _run_bot_action(lambda: deployer.set_tag(approval_tag(stage), value))
    if as_json:
        return _print_json({"action": "approve", "stage": stage, "approved": value})
    say(f"approved promotion into '{stage}' ({value})")


# ----------------------------------------------------------------------------- checks and reports


@app.command()
def preflight(
    project_dir: Optional[Path] = ProjectDir,
    prometheus: Optional[str] = PrometheusUrl,
    alertmanager: Optional[str] = AlertmanagerUrl,
    grafana: Optional[str] = GrafanaUrl,
    skip: list[str] = typer.Option([], "--skip", help="Item to skip on purpose (repeatable)."),
    as_json: bool = JsonOutput,
) -> None:
    """The Day-0 go/no-go list. Exit 0 when every item is go."""
    from rollout.release.preflight import run_preflight

    root = _project(project_dir)
    try:
        with ExitStack() as stack:
            prom = stack.enter_context(_prometheus(prometheus)) if prometheus else None
            items = run_preflight(root, prom, alertmanager, grafana, skip)
    except ValueError as error:
        raise fail(str(error))
    if as_json:
        out.print_json(json.dumps([item.to_dict() for item in items]))
    else:
        table = Table(title="preflight")
        for column in ("check", "result", "detail"):
            table.add_column(column)
        for item in items:
            result = Text("go", style="green") if item.ok else Text("no-go", style="red")
            table.add_row(Text(item.name), result, Text(clean(item.detail)))
        out.print(table)
    raise typer.Exit(0 if all(item.ok for item in items) else 1)


@app.command()
def report(
    project_dir: Optional[Path] = ProjectDir,
    stack: str = StackName,
    pulumi_root: Optional[Path] = PulumiRoot,
    prometheus: Optional[str] = PrometheusUrl,
    alertmanager: Optional[str] = typer.Option(
        None, "--alertmanager", envvar="ALERTMANAGER_URL",
        help="With --daily: Alertmanager base URL, for the pages the bot posted itself (optional)."),
    report_dir: Path = ReportDir,
    daily: bool = typer.Option(False, "--daily", help="The daily status of the last 24 h, e-mailed and posted to Slack."),
    send: bool = typer.Option(True, "--send/--no-send", help="With --daily: deliver it (SMTP_PASSWORD[_FILE], SLACK_WEBHOOK_URL[_FILE])."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="With --daily: write the Markdown and PNG and say where they would go; send nothing."),
    window: str = typer.Option("24h", "--window", help="With --daily: the span it covers, up to now (e.g. 24h, 90m)."),
) -> None:
    """Write the current stage's report (Markdown + PNG plot), or with --daily the daily status.

    The daily status is the plan's 09:00 UTC e-mail, delivered by e-mail and Slack (not with --dry-run)."""
    from rollout.release.hooks import write_stage_report

    root = _project(project_dir)
    release = _release(root)
    deployer = _deployer(root, stack, pulumi_root)
    prom = _prometheus(prometheus)
    if not daily:
        path = _run_bot_action(lambda: write_stage_report(release, deployer, prom, report_dir))
        say(f"report: {path}")
        return
    from rollout.release import daily as daily_status
    from rollout.release.bot import ReleaseBot, utcnow
    from rollout.release.notify import AlertmanagerClient, NotifyError

    from rollout.model import parse_duration

    try:
        span = parse_duration(window)
    except ValueError as error:
        raise fail(f"--window: {error}")
    bot = ReleaseBot(release, deployer, prom)
    try:
        am = AlertmanagerClient(alertmanager) if alertmanager else None
    except NotifyError as error:
        raise fail(f"--alertmanager: {error}")
    with prom:
        status = _run_bot_action(lambda: daily_status.compose(
            release, deployer.current(), deployer.history(), bot.check, prom, utcnow(), window=span, alertmanager=am,
        ))
    markdown, png = daily_status.write(status, report_dir)
    say(f"daily status: {markdown} ({png.name})")
    email = release.project.monitoring.alerting.email
    if dry_run:
        say(f"dry run: not e-mailed to {email.to} via {email.smarthost}, not posted to Slack")
        return
    if send:
        try:
            for line in daily_status.deliver(status, markdown, png, email):
                say(line)
        except NotifyError as error:
            raise fail(f"the daily status was written but not delivered: {error}")
