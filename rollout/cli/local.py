"""`rollout demo`: the whole release loop on one machine (stand-ins for the cluster and the app)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer

from rollout.cli.common import ProjectDir, _project, app, fail, out


@app.command()
def demo(
    out_dir: Path = typer.Option(Path("demo-out"), "--out", help="Where the report, plot and logs go."),
    project_dir: Optional[Path] = ProjectDir,
    fault_stage: str = typer.Option("majority", help="Stage at which the canary turns bad."),
    fault: str = typer.Option("bad", help="bad (errors, latency, failing self-tests) or never-ready (pods never ready)."),
    check_seconds: float = typer.Option(2.0, help="Compressed check interval."),
    hold_seconds: float = typer.Option(12.0, help="Compressed hold per stage."),
) -> None:
    """The whole loop on one machine: real Prometheus + Alertmanager, synthetic Genesis, the bot."""
    from rollout.local.demo import DemoError, run_demo

    logging.basicConfig(level=logging.WARNING)
    try:
        summary = run_demo(
            _project(project_dir), out_dir, fault_stage=fault_stage, fault=fault,
            check_seconds=check_seconds, hold_seconds=hold_seconds, console=out,
        )
    except DemoError as error:
        raise fail(str(error))
    raise typer.Exit(0 if summary.ok else 1)


