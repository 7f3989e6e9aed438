"""`rollout check`: one evaluation of every gate now."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table
from rich.text import Text

from rollout.cli.common import (
    ProjectDir,
    PrometheusUrl,
    _project,
    _prometheus,
    _release,
    app,
    fail,
    out,
    say,
)


def print_check(result, as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(result.to_dict()))
        return
    colours = {"pass": "green", "hold": "yellow", "fail": "red"}
    title = Text.assemble(f"stage {result.stage}: ", (result.verdict.upper(), colours[result.verdict]))
    table = Table(title=title)
    for column in ("gate", "canary", "stable", "target", "critical", "status"):
        table.add_column(column)
    for gate in result.gates:  # Text cells: data is never read as markup
        table.add_row(
            Text(gate.name),
            Text("no data" if gate.value is None else f"{gate.value:.4g}"),
            Text("no data" if gate.baseline is None else f"{gate.baseline:.4g}"),
            Text(f"{'<=' if gate.direction == 'max' else '>='} {gate.target:g}"),
            Text("-" if gate.critical is None else f"{gate.critical:g}"),
            Text(gate.status, style=colours[gate.status]),
        )
    out.print(table)
    say(result.reason)



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


