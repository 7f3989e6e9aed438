"""`rollout demo` (the whole release loop on one machine) and `rollout scenario` (synthetic
replay data): stand-ins for the cluster and the app."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Optional

import typer

from rollout.cli.common import ProjectDir, _project, app, err, fail, out, say


@app.command()
def demo(
    out_dir: Path = typer.Option(Path("demo-out"), "--out", help="Where the report, plot and logs go."),
    project_dir: Optional[Path] = ProjectDir,
    fault_stage: str = typer.Option("majority", help="Stage at which the canary turns bad."),
    fault: str = typer.Option("bad", help="bad (errors, latency, failing self-tests) or never-ready (pods never ready)."),
    check_seconds: float = typer.Option(2.0, help="Compressed check interval."),
    hold_seconds: float = typer.Option(12.0, help="Compressed hold per stage."),
    keep: bool = typer.Option(False, "--keep", help="A sandbox instead of the scripted run: leave Prometheus, "
                              "Alertmanager, the synthetic pods and the Pulumi stand-in running (a healthy canary "
                              "at the first stage) and print the environment to export; Ctrl-C or --stop ends it."),
    stop: bool = typer.Option(False, "--stop", help="Stop the sandbox running from --out (started with --keep)."),
    approval: str = typer.Option("majority", "--approval", help="With --keep: the stage that needs "
                                 "`rollout approve` ('none': no stage)."),
) -> None:
    """The whole loop on one machine: real Prometheus + Alertmanager, synthetic Genesis, the bot.

    With --keep, a sandbox for the operator commands: `source OUT/sandbox.env` in another shell,
    then `rollout status`, `tick`, `promote`, `approve` ... work as in production."""
    from rollout.local.demo import DemoError, run_demo

    logging.basicConfig(level=logging.WARNING)
    if keep and stop:
        raise fail("give one of --keep and --stop")
    if stop:
        from rollout.local.sandbox import stop_sandbox

        try:
            stopped = stop_sandbox(out_dir)
        except DemoError as error:
            raise fail(str(error))
        say(f"stopped the sandbox in {out_dir}: {', '.join(stopped) or 'nothing was running any more'}")
        return
    if keep:
        return _sandbox(_project(project_dir), out_dir, check_seconds, hold_seconds, approval)
    try:
        summary = run_demo(
            _project(project_dir), out_dir, fault_stage=fault_stage, fault=fault,
            check_seconds=check_seconds, hold_seconds=hold_seconds, console=out,
        )
    except DemoError as error:
        raise fail(str(error))
    raise typer.Exit(0 if summary.ok else 1)


def _sandbox(project_dir: Path, out_dir: Path, check_seconds: float, hold_seconds: float, approval: str) -> None:
    from rollout.local.demo import DemoError
    from rollout.local.sandbox import ENV_FILE, export_line, run_sandbox

    def ready(sandbox) -> None:
        say(f"sandbox ready: Prometheus {sandbox.env['PROMETHEUS_URL']}, Alertmanager {sandbox.env['ALERTMANAGER_URL']}, "
            f"the stack at the first stage (Pulumi stand-in, state {sandbox.env['FAKE_PULUMI_STATE']})")
        say(f"in another shell: source {sandbox.out_dir / ENV_FILE}   (or eval this line:)")
        say(export_line(sandbox.env))
        say("then: rollout status --watch | tick | promote | rollback | pause | resume | approve ... "
            f"(the bot is not running: `rollout watch` runs it); stop with Ctrl-C or `rollout demo --stop --out {out_dir}`")

    try:
        run_sandbox(project_dir, out_dir, check_seconds=check_seconds, hold_seconds=hold_seconds,
                    approval_stage=None if approval == "none" else approval, on_ready=ready)
    except DemoError as error:
        raise fail(str(error))
    except KeyboardInterrupt:
        say("sandbox stopped", console=err)


# GitHub takes attachments up to 25 MB: a scenario written for an issue should fit.
ATTACHABLE_BYTES = 25_000_000
MAX_SCRAPE = 120  # seconds: a 5m rate window needs at least two samples of every series


@app.command()
def scenario(
    name: Optional[str] = typer.Argument(None, help="A scenario of the library; none: list them."),
    out_file: Optional[Path] = typer.Option(None, "--out", help="The OpenMetrics file to write."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Noise seed (default: the scenario's)."),
    hours: Optional[float] = typer.Option(
        None, "--hours", help="Write only the first HOURS of the stage (default: all of it, usually 48)."),
    scrape: Optional[str] = typer.Option(
        None, "--scrape", help="Scrape interval of the written samples, e.g. 60s (default: the scenario's, 30s)."),
) -> None:
    """Write a synthetic scenario of the replay library as an OpenMetrics file (or list them).

    Each scenario says what the plan's policy should decide and when; replay it with
    `rollout replay --metrics FILE --start <its start> --stage canary`. A whole 48 h stage is
    large (about 180 MB); `--hours` and `--scrape` make a file small enough to attach to an issue."""
    from dataclasses import replace

    from rollout.local.scenarios import LIBRARY, generate, with_seed
    from rollout.local.scenarios import scenario as find
    from rollout.model import format_duration, parse_duration

    if name is None:
        for spec in LIBRARY.values():
            expected = spec.expected
            when = "" if expected is None or expected.earliest is None else (
                f" at +{format_duration(expected.earliest)}..+{format_duration(expected.latest)}")
            say(f"{spec.name:<22} {spec.description}  [plan: {expected.action if expected else '?'}{when}]")
        return
    try:  # a typo in the name is the first thing to hear about
        spec = find(name)
    except KeyError as error:
        raise fail(str(error.args[0]))
    if out_file is None:
        raise fail("--out FILE is required to write a scenario")
    if seed is not None:
        spec = with_seed(spec, seed)
    if hours is not None:
        if not 0 < hours <= spec.duration.total_seconds() / 3600:
            raise fail(f"--hours must be above 0 and at most the scenario's {format_duration(spec.duration)} (got {hours:g})")
        spec = replace(spec, duration=timedelta(hours=hours))
    if scrape is not None:
        try:
            interval = parse_duration(scrape)
        except ValueError as error:
            raise fail(f"--scrape: {error}")
        if not 1 <= interval.total_seconds() <= MAX_SCRAPE:
            raise fail(f"--scrape must be between 1s and {MAX_SCRAPE}s, so every rate window holds samples (got {scrape})")
        spec = replace(spec, scrape_interval=interval)
    expected = spec.expected
    if expected is not None and expected.latest is not None and expected.latest > spec.duration:
        say(f"note: the plan's expected {expected.action} (by +{format_duration(expected.latest)}) may lie "
            f"after the {format_duration(spec.duration)} written", console=err)
    info = generate(spec, out_file)
    say(f"wrote {spec.name} (seed {spec.seed}, {format_duration(spec.duration)}, a scrape every "
        f"{format_duration(spec.scrape_interval)}) to {out_file}: {int(info['samples'])} samples, "
        f"{info['bytes'] / 1e6:.1f} MB; the stage starts at {spec.start.isoformat().replace('+00:00', 'Z')}")
    if info["bytes"] > ATTACHABLE_BYTES:
        say(f"note: larger than the {ATTACHABLE_BYTES // 1_000_000} MB GitHub takes as an attachment: "
            "--hours and --scrape make it smaller", console=err)
