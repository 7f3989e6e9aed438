"""`rollout demo` (the whole release loop on one machine) and `rollout scenario` (synthetic
replay data): stand-ins for the cluster and the app."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer

from rollout.cli.common import ProjectDir, _project, app, fail, out, say


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




@app.command()
def scenario(
    name: Optional[str] = typer.Argument(None, help="A scenario of the library; none: list them."),
    out_file: Optional[Path] = typer.Option(None, "--out", help="The OpenMetrics file to write."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Noise seed (default: the scenario's)."),
) -> None:
    """Write a synthetic scenario of the replay library as an OpenMetrics file (or list them).

    Each scenario says what the plan's policy should decide and when; replay it with
    `rollout replay --metrics FILE --start <its start> --stage canary`."""
    from rollout.local.scenarios import LIBRARY, generate, with_seed
    from rollout.local.scenarios import scenario as find
    from rollout.model import format_duration

    if name is None:
        for spec in LIBRARY.values():
            expected = spec.expected
            when = "" if expected is None or expected.earliest is None else (
                f" at +{format_duration(expected.earliest)}..+{format_duration(expected.latest)}")
            say(f"{spec.name:<22} {spec.description}  [plan: {expected.action if expected else '?'}{when}]")
        return
    if out_file is None:
        raise fail("--out FILE is required to write a scenario")
    try:
        spec = find(name)
    except KeyError as error:
        raise fail(str(error.args[0]))
    if seed is not None:
        spec = with_seed(spec, seed)
    info = generate(spec, out_file)
    say(f"wrote {spec.name} (seed {spec.seed}) to {out_file}: {int(info['samples'])} samples, "
        f"{info['bytes'] / 1e6:.0f} MB; the stage starts at {spec.start.isoformat().replace('+00:00', 'Z')}")
