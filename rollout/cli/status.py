"""`rollout status`: where the release stands, once or live (`--watch`, refreshing in place).

The data is `rollout.release.status_view.status_view` (pure); this module only reads the stack
and Prometheus, and draws the view (Rich) or prints it as one JSON object.
"""

from __future__ import annotations

import json
import time
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Group
from rich.table import Table
from rich.text import Text

from rollout.cli.common import (
    JsonOutput,
    ProjectDir,
    PrometheusUrl,
    PulumiRoot,
    StackName,
    _deployer,
    _project,
    _prometheus,
    _release,
    _run_bot_action,
    app,
    clean,
    redacted,
    out,
)
from rollout.cli.analysis import judge_cell
from rollout.numbers import number, percent

VERDICT_STYLES = {"pass": "green", "hold": "yellow", "fail": "red"}
LADDER_STYLES = {"rollback target": "dim", "done": "green", "current": "bold reverse", "next": "bold", "later": "dim"}


def _time(text: str | None) -> str:
    return "-" if text is None else f"{datetime.fromisoformat(text):%H:%M:%S}Z"


def render(view: dict[str, Any], stack: str) -> Group:
    """The view, drawn: thin on purpose, every figure comes from `status_view`."""
    from rollout.release.report import unit_of

    ladder = Text()
    for i, row in enumerate(view["ladder"]):
        if i:
            ladder.append(" > " if row["state"] in ("current", "next", "later") else " | ", style="dim")
        label = f"{row['stage']} {row['weight']}%" + (" (approval)" if row["approval"] else "")
        ladder.append(label, style=LADDER_STYLES[row["state"]])
    measured = ", ".join(
        f"{service} {'not measured' if share is None else percent(share / 100)}"
        for service, share in (view["measured_weight"] or {}).items()
    ) or "not measured (no --prometheus)"
    decision = view["decision"]
    lines = [
        Text.assemble(("stack ", "dim"), stack, ("  at ", "dim"), _time(view["now"])),
        Text.assemble(("stages   ", "dim"), ladder),
        Text.assemble(("weight   ", "dim"), f"desired {view['weight']}%, measured {measured}"),
        Text.assemble(("stage    ", "dim"), (view["stage"], "bold"),
                      f" since {_time(view['since'])} ({view['time_in_stage']}); hold left {view['hold_left']} of "
                      f"{view['hold']}; next check {_time(view['next_check'])} (every {view['check_interval']})"),
        Text.assemble(("decision ", "dim"), (decision["action"], "bold"), " - ", clean(decision["reason"])),
        Text(f"paused: {clean(view['paused'] or 'no')}"),
    ]
    if view["approval"]:
        approval = view["approval"]
        given = f"approved {approval['approved']}" if approval["approved"] else "needed, not given"
        lines.append(Text(f"approval: {approval['stage']}: {clean(given)}"))
    lines.append(Text(f"promotion: {clean(view['promotion'] or 'none (last stage)')}"))
    parts: list[Any] = lines
    if view["checks"]:
        checks = Table(title="last checks", title_justify="left", expand=False)
        for column in ("at", "verdict", "reason"):
            checks.add_column(column)
        for check in view["checks"]:
            checks.add_row(Text(_time(check["at"])), Text(check["verdict"], style=VERDICT_STYLES[check["verdict"]]),
                           Text(clean(check["reason"])))
        parts.append(checks)
        latest = view["checks"][-1]
        gates = Table(title=f"gates at {_time(latest['at'])}", title_justify="left")
        judged = any(gate["evidence"] is not None for gate in latest["gates"])
        for column in ("gate", "canary", "stable", "target", "critical", "status") + (("judge",) if judged else ()):
            gates.add_column(column)
        for gate in latest["gates"]:  # the figures as `rollout check` writes them (rollout.numbers)
            unit = unit_of(gate["name"])
            gates.add_row(
                Text(gate["name"]), Text(number(gate["value"], unit)), Text(number(gate["baseline"], unit)),
                Text(f"{'<=' if gate['direction'] == 'max' else '>='} {number(gate['target'], unit)}"),
                Text("-" if gate["critical"] is None else number(gate["critical"], unit)),
                Text(gate["status"], style=VERDICT_STYLES.get(gate["status"], "")),
                *((Text(judge_cell(gate["evidence"])),) if judged else ()),
            )
        parts.append(gates)
    else:
        parts.append(Text("checks: none yet", style="dim"))
    return Group(*parts)


def read_view(release, deployer, prom) -> dict[str, Any]:
    """Read the stack (and Prometheus, when given) and build the view."""
    from rollout.analysis.signals import canary_share_query
    from rollout.release.bot import ReleaseBot, next_decision, utcnow
    from rollout.release.status_view import status_view

    state = _run_bot_action(deployer.current)
    stage = release.stage(state.stage)
    checks, measured = [], None
    if prom is not None:
        if stage.weight:
            bot = ReleaseBot(release, deployer, prom)
            checks = _run_bot_action(lambda: bot.recent_checks(stage, state.since, utcnow()))
        measured = {
            s.name: _run_bot_action(lambda s=s: prom.value(canary_share_query(s.name, s.namespace)))
            for s in release.project.services
        }
    now = utcnow()
    return status_view(release, state, checks, next_decision(release, state, now, checks), now, measured)


@app.command()
def status(
    project_dir: Optional[Path] = ProjectDir,
    stack: str = StackName,
    pulumi_root: Optional[Path] = PulumiRoot,
    prometheus: Optional[str] = PrometheusUrl,
    as_json: bool = JsonOutput,
    watch: bool = typer.Option(False, "--watch", "-w", help="Keep the view on screen, refreshed in place "
                               "(with --json: one object per refresh); Ctrl-C ends it."),
    interval: float = typer.Option(5.0, "--interval", min=0.5, help="Seconds between refreshes with --watch."),
    count: int = typer.Option(0, "--count", min=0, help="With --watch: stop after this many refreshes (0: never)."),
) -> None:
    """Where the release stands: the stage ladder, desired vs measured weight, the last checks with
    their gates and the judge's evidence, next check, hold left, pause and approval.

    Without --prometheus only what the stack holds (no checks, no measured weight)."""
    root = _project(project_dir)
    release = _release(root)
    deployer = _deployer(root, stack, pulumi_root)
    with ExitStack() as resources:
        prom = resources.enter_context(_prometheus(prometheus)) if prometheus else None
        _show(lambda: read_view(release, deployer, prom), stack, as_json, watch, interval, count)


def _show(read, stack: str, as_json: bool, watch: bool, interval: float, count: int) -> None:
    """Once, or every `interval` seconds until Ctrl-C (or `count` refreshes)."""

    def show_json(view: dict[str, Any]) -> None:
        out.print(json.dumps(redacted(view)), soft_wrap=True, markup=False, highlight=False)

    if not watch:
        view = read()
        return show_json(view) if as_json else out.print(render(view, stack))
    refreshes = 0
    try:
        if as_json or not out.is_terminal:  # JSON lines, or frame after frame when piped or logged
            while True:
                view = read()
                show_json(view) if as_json else out.print(render(view, stack))
                refreshes += 1
                if count and refreshes >= count:
                    return
                if not as_json:
                    out.rule(style="dim")
                time.sleep(interval)
        from rich.live import Live

        with Live(render(read(), stack), console=out, auto_refresh=False) as live:
            refreshes = 1
            while not count or refreshes < count:
                time.sleep(interval)
                live.update(render(read(), stack), refresh=True)
                refreshes += 1
    except KeyboardInterrupt:  # the way out of a live view: not an error
        return
