"""`rollout check`: one evaluation of every gate now."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table
from rich.text import Text

from rollout.cli.common import (
    JsonOutput,
    ProjectDir,
    PrometheusUrl,
    _project,
    _prometheus,
    _release,
    app,
    err,
    fail,
    out,
    parse_time,
    say,
)


def print_check(result, as_json: bool) -> None:
    from rollout.numbers import number
    from rollout.release.report import unit_of

    if as_json:
        out.print_json(json.dumps(result.to_dict()))
        return
    colours = {"pass": "green", "hold": "yellow", "fail": "red"}
    title = Text.assemble(f"stage {result.stage}: ", (result.verdict.upper(), colours[result.verdict]))
    table = Table(title=title)
    for column in ("gate", "canary", "stable", "target", "critical", "status"):
        table.add_column(column, no_wrap=column != "gate")  # "773 ms" and "<= 200 ms" stay whole
    for gate in result.gates:  # Text cells: data is never read as markup
        unit = unit_of(gate.name)
        table.add_row(
            Text(gate.name),
            Text(number(gate.value, unit)),
            Text(number(gate.baseline, unit)),
            Text(f"{'<=' if gate.direction == 'max' else '>='} {number(gate.target, unit)}"),
            Text("-" if gate.critical is None else number(gate.critical, unit)),
            Text(gate.status, style=colours[gate.status]),
        )
    out.print(table)
    # the judge's evidence is a sentence, not a cell: one line per judged gate under the table
    for gate in result.gates:
        if gate.evidence is not None:
            say(f"judge {gate.name}: {judge_cell(gate.evidence.to_dict())}")
    say(result.reason)


def judge_cell(evidence: dict | None) -> str:
    """e-value against 1/alpha, and the canary/stable ratio with its confidence sequence, from
    `Evidence.to_dict()` (where an infinite value is the string "inf"). Scientific notation
    here, unlike rollout.numbers: an e-value can be 1e150."""
    if evidence is None:
        return "-"

    def plain(value: float | str) -> str:
        return value if isinstance(value, str) else f"{value:.3g}"

    ratio = "no events" if evidence["ratio"] is None else (
        f"ratio {plain(evidence['ratio'])} [{plain(evidence['ratio_low'])}, {plain(evidence['ratio_high'])}]")
    return f"{'REGRESSION ' if evidence['regression'] else ''}e {plain(evidence['e_value'])} / {evidence['threshold']:g}, {ratio}"


@app.command()
def check(
    stage: str = typer.Option(..., "--stage", help="Stage whose gates to apply."),
    prometheus: Optional[str] = PrometheusUrl,
    as_json: bool = JsonOutput,
    since: Optional[str] = typer.Option(
        None, "--since", help="When the stage started (RFC 3339 or unix seconds): judged gates show the "
        "sequential judge's evidence from then on; without it they show none."),
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
    started = None if since is None else parse_time(since, "--since")
    if started is None and target.gates.judged() and not as_json:
        say("judged gates show no evidence without --since (the stage start)", console=err)
    try:
        with _prometheus(prometheus) as prom:
            result = check_release(release, prom, target, since=started)
    except PrometheusError as error:
        raise fail(f"{error} - no verdict without metrics")
    print_check(result, as_json)
    raise typer.Exit(result.exit_code)


