"""What every command group shares: the Typer app, consoles, options, and the helpers that turn
refused config and adapter errors into exit code 3 with a readable message.

Output hygiene: data (gate names, queries, reasons, error bodies) is never read as console
markup or emoji codes (`say`, `Text`), and credentials in URLs and tokens are redacted from
every message (`rollout.release.report.redact`).
"""

from __future__ import annotations

import functools
import json
import os
from contextvars import ContextVar
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.text import Text

app = typer.Typer(
    help="Progressive delivery for Genesis SPICE + Pipelex: render, plan, check, promote, roll back.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
    rich_markup_mode="markdown",  # help paragraphs reflow instead of keeping the docstring's line breaks
)
out = Console(emoji=False, highlight=False)
err = Console(stderr=True, emoji=False, highlight=False)
EXIT_ERROR = 3  # the command could not do its job (bad config, Prometheus or Pulumi unreachable)
EXIT_NOT_NOTIFIED = 4  # the stage change was applied (or failed) but not everyone could be told

# a command run with --json reports its errors as JSON on stdout too (see `fail`)
_json_errors: ContextVar[bool] = ContextVar("json_errors", default=False)


def _print_version(value: bool) -> None:
    if value:
        try:
            number = version("genesis-rollout")
        except PackageNotFoundError:  # run from a checkout that is not installed
            number = "unknown"
        typer.echo(f"rollout {number}")
        raise typer.Exit(0)


@app.callback()
def _global_options(
    _version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, metavar="", help="Print the version and exit."
    ),
) -> None:
    pass


def json_errors(command):
    """Wrap a command so that, run with `--json` (its `as_json` parameter), its errors are one JSON
    object on stdout as well: `{"error": "...", "exit": 3}` with the exit code it returns."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        token = _json_errors.set(bool(kwargs.get("as_json")))
        try:
            return command(*args, **kwargs)
        finally:
            _json_errors.reset(token)

    return run


JsonOutput = typer.Option(False, "--json", help="Print the result as JSON on stdout; errors too, as "
                          '{"error": ..., "exit": N}.')
ProjectDir = typer.Option(
    None, "--project-dir", "-C", envvar="ROLLOUT_PROJECT_DIR",
    help="Folder with Pulumi.yaml (default: nearest one above cwd).",
)
PrometheusUrl = typer.Option(None, "--prometheus", envvar="PROMETHEUS_URL", help="Prometheus base URL.")
AlertmanagerUrl = typer.Option(
    None, "--alertmanager", envvar="ALERTMANAGER_URL", help="Alertmanager base URL (rollback alerts)."
)
GrafanaUrl = typer.Option(None, "--grafana", envvar="GRAFANA_URL", help="Grafana base URL (annotations).")
StackName = typer.Option("prod", "--stack", envvar="PULUMI_STACK", help="The one stack holding the state.")
PulumiRoot = typer.Option(None, "--pulumi-root", help="Folder with bin/pulumi (default: PATH).")
ReportDir = typer.Option(
    Path("reports"), "--report-dir", envvar="ROLLOUT_REPORT_DIR", help="Where incident and stage reports go."
)


def clean(text: str) -> str:
    from rollout.release.report import redact

    return redact(str(text))


def redacted(data):  # noqa: ANN001, ANN201
    """A JSON-able value with credentials redacted from every string in it (not from the JSON
    text: a redaction must never eat a quote)."""
    if isinstance(data, str):
        return clean(data)
    if isinstance(data, dict):
        return {key: redacted(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [redacted(value) for value in data]
    return data


def say(*parts: str | tuple[str, str], console: Console = out) -> None:
    """Print text as it is: `(text, style)` pairs are styled, nothing is parsed as markup."""
    console.print(Text.assemble(*((clean(p[0]), p[1]) if isinstance(p, tuple) else clean(p) for p in parts)), soft_wrap=True)


def fail(message: str, code: int = EXIT_ERROR) -> typer.Exit:
    """The error on stderr (and as JSON on stdout under --json); raise what it returns."""
    if _json_errors.get():
        typer.echo(json.dumps({"error": clean(message), "exit": code}))
    say(("error: ", "red"), message, console=err)
    return typer.Exit(code)


def find_project_dir(start: Path | None = None) -> Path:
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "Pulumi.yaml").exists():
            return folder
    raise FileNotFoundError(f"no Pulumi.yaml in {here} or above; pass --project-dir")


def _project(project_dir: Optional[Path]) -> Path:
    if project_dir is None:
        try:
            return find_project_dir()
        except FileNotFoundError as error:
            raise fail(str(error))
    if not project_dir.is_dir():
        raise fail(f"--project-dir {project_dir}: no such folder")
    if not (project_dir / "Pulumi.yaml").is_file():
        raise fail(f"--project-dir {project_dir}: no Pulumi.yaml in this folder")
    return project_dir.resolve()


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
    """The Prometheus-compatible API, with the auth of PROMETHEUS_* (rollout.release.prometheus)."""
    from rollout.release.prometheus import Prometheus, PrometheusAuth

    if not url:
        raise fail("no Prometheus URL: pass --prometheus or set PROMETHEUS_URL")
    try:
        return Prometheus(url, auth=PrometheusAuth.from_env(os.environ))
    except ValueError as error:
        raise fail(str(error))


def _deployer(project_dir: Path, stack: str, pulumi_root: Optional[Path]):
    from rollout.release.deployer import DeployerError, PulumiDeployer, cli_env_from_files

    try:  # PULUMI_ACCESS_TOKEN_FILE: a mounted Secret, handed to the CLI's process only
        env = cli_env_from_files(os.environ)
    except DeployerError as error:
        raise fail(str(error))
    return PulumiDeployer(project_dir, stack, pulumi_root=pulumi_root, env=env)


def _hooks(release, alertmanager: Optional[str], grafana: Optional[str], report_dir: Path, prometheus):
    from rollout.release.hooks import default_hooks
    from rollout.release.notify import NotifyError

    try:
        return default_hooks(
            release=release, alertmanager_url=alertmanager, grafana_url=grafana,
            report_dir=report_dir, prometheus=prometheus,
        )
    except NotifyError as error:  # a malformed URL: a config mistake, found before anything runs
        raise fail(str(error))


def _bot(project_dir, stack, pulumi_root, prometheus, alertmanager, grafana, report_dir):
    from rollout.config import load_release_lenient
    from rollout.release.bot import ReleaseBot

    # a broken unrelated stage file is reported by the bot, never in the way of a rollback
    release = _or_config_error(lambda: load_release_lenient(project_dir))
    prom = _prometheus(prometheus)
    try:  # how hard to try telling people after a change (3 attempts, 2 s then 4 s apart)
        attempts = int(os.environ.get("ROLLOUT_NOTIFY_ATTEMPTS") or 3)
        backoff = float(os.environ.get("ROLLOUT_NOTIFY_BACKOFF") or 2.0)
    except ValueError as error:
        raise fail(f"ROLLOUT_NOTIFY_ATTEMPTS / ROLLOUT_NOTIFY_BACKOFF: {error}")
    deployer = _deployer(project_dir, stack, pulumi_root)
    deployer.progress = _print_phase  # each phase of a promotion or rollback, as it happens
    return ReleaseBot(
        release,
        deployer,
        prom,
        hooks=_hooks(release, alertmanager, grafana, report_dir, prom),
        notify_attempts=max(1, attempts),
        notify_backoff=max(0.0, backoff),
    )


def _print_phase(at: datetime, text: str) -> None:
    """On stderr, so `--json` output stays one document."""
    say((f"{at:%H:%M:%S}Z ", "dim"), text, console=err)


def _run_bot_action(action):
    """Run a bot action, turning adapter errors into exit code 3 with a readable message."""
    from rollout.release.deployer import DeployerError
    from rollout.release.prometheus import PrometheusError

    try:
        return action()
    except (DeployerError, PrometheusError, ValueError, KeyError) as error:
        raise fail(str(error.args[0]) if isinstance(error, KeyError) else str(error))


MAX_UNIX_SECONDS = 253402300799.0  # 9999-12-31T23:59:59Z, the last second datetime can hold


def parse_time(text: str, flag: str) -> datetime:
    """A time given on the command line: RFC 3339 (with a zone) or unix seconds; anything else
    is an error naming the flag."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = None
    if seconds is not None:
        # inf, nan, 1e300 and the like: an error naming the flag, never an OverflowError
        if not (0 <= seconds <= MAX_UNIX_SECONDS):
            raise fail(f"{flag}: {text!r} is not a time: unix seconds must be between 0 and {MAX_UNIX_SECONDS:.0f} (year 9999)")
        return datetime.fromtimestamp(seconds, UTC)
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, OverflowError):
        raise fail(f"{flag}: {text!r} is neither RFC 3339 (2026-01-05T00:00:00Z) nor unix seconds") from None
    if value.tzinfo is None:
        raise fail(f"{flag}: {text!r} needs a time zone, e.g. a trailing Z for UTC")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise fail(f"{flag}: {text!r} is out of range in UTC") from None


@contextmanager
def stopped_by_sigterm() -> Iterator[None]:
    """SIGTERM ends the command like Ctrl-C does: context managers run, so the Prometheus and
    promtool children a command started are stopped (the default handler would orphan them)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def writable_file(path: Path, flag: str) -> Path:
    """An output file's path checked before any work: not a directory, in a folder that exists."""
    if path.is_dir():
        raise fail(f"{flag}: {path} is a directory; give a file name")
    if not path.parent.is_dir():
        raise fail(f"{flag}: the folder {path.parent} does not exist")
    return path
