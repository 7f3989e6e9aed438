"""`rollout demo --keep`: the demo's servers left running, for trying every operator command by hand.

The same stand-in cluster as the demo (real Prometheus and Alertmanager on 127.0.0.1, synthetic
pods), but the stack is held by the Pulumi CLI stand-in (`rollout.local.pulumi_standin`) and
changed through the real Automation API, exactly as `rollout status`, `tick`, `promote`,
`rollback`, `pause`, `resume` and `approve` do it in production. The sandbox follows the
stand-in's stack outputs and moves the synthetic traffic and the stage's alert rules like
`pulumi up` would move the route weights and the PrometheusRule.

The stage files are a copy of the project's with demo-sized time (checks every few seconds, a
hold of seconds, a short scale-down delay) and, so `rollout approve` can be tried, approval
required for one stage. Everything started is recorded in `sandbox.json` (process ids) so
`rollout demo --stop` can tear it down from another shell; Ctrl-C or SIGTERM tear it down too.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Callable

import yaml

from rollout.config import PROJECT_FILE, ConfigError, load_release, project_name, stage_file
from rollout.local.demo import DemoError, LocalCluster, for_demo, local_cluster
from rollout.local.pulumi_standin import ROOT, STATE_ENV, search_path, stack_state, write_state
from rollout.model import Release, format_duration
from rollout.release.bot import ReleaseBot
from rollout.release.deployer import DeployerError, PulumiDeployer
from rollout.release.prometheus import Prometheus

STATE_FILE = "sandbox.json"  # the running sandbox: process ids and environment
ENV_FILE = "sandbox.env"  # `source` it (or eval its line) in another shell
STACK = "prod"


def _sandbox_stage_file(data: dict, namespace: str, check: timedelta, hold: timedelta, approval: bool) -> dict:
    config = data["config"]
    key = f"{namespace}:analysis"
    analysis = dict(config.get(key) or {})
    analysis.update(
        checkInterval=format_duration(check),
        hold=format_duration(hold),
        window=format_duration(check * 3),
        progressDeadline=format_duration(check * 3),
    )
    if approval:
        analysis["approval"] = "required"
    config[key] = analysis
    return data


def write_project(
    project_dir: Path, dest: Path, *, check_seconds: float, hold_seconds: float, approval_stage: str | None
) -> Release:
    """A copy of Pulumi.yaml and the stage files with demo-sized time (whole seconds, what a
    stage file can say) in `dest`; the sandbox's release, validated before use, on the demo's
    time scale: the same stages the operator commands read from those files."""
    check = timedelta(seconds=max(1, round(check_seconds)))
    hold = timedelta(seconds=max(1, round(hold_seconds)))
    namespace = project_name(project_dir)
    release = load_release(project_dir)  # the real files must hold first
    if approval_stage is not None:
        release.stage(approval_stage)  # KeyError names the stages there are
    dest.mkdir(parents=True, exist_ok=True)
    project = yaml.safe_load((project_dir / PROJECT_FILE).read_text())
    routing = project["config"].get(f"{namespace}:routing")
    if isinstance(routing, dict) and isinstance(routing.get("value"), dict):
        # a stage change by hand takes seconds: the waits between its phases shrink with the checks
        routing["value"].update(scaleDownDelay=format_duration(check), flagsPropagation=format_duration(check))
    (dest / PROJECT_FILE).write_text(yaml.safe_dump(project, sort_keys=False))
    for stage in release.stages:
        data = yaml.safe_load(stage_file(project_dir, stage.name).read_text())
        edited = _sandbox_stage_file(data, namespace, check, hold, stage.name == approval_stage)
        stage_file(dest, stage.name).write_text(yaml.safe_dump(edited, sort_keys=False))
    return for_demo(load_release(dest), check.total_seconds(), hold.total_seconds())


def _follow(state_file: Path, cluster: LocalCluster, applied: list[str]) -> None:
    """Move the stand-in cluster to the stage the stack's outputs name, once per change."""
    try:
        outputs = json.loads(state_file.read_text())["stacks"][STACK]["outputs"]
    except (OSError, ValueError, KeyError):
        return  # the stand-in is writing it; the next look sees it whole
    stage = outputs.get("stage")
    if stage and (not applied or applied[-1] != stage):
        cluster.apply(cluster.stack_config(stage))
        applied.append(stage)


def export_line(env: dict[str, str]) -> str:
    """One line for `eval`: PATH puts the Pulumi stand-in first and keeps the rest."""
    parts = [f"{k}={shlex.quote(v)}" for k, v in env.items() if k != "PATH"]
    parts.append(f'PATH={shlex.quote(env["PATH"])}:"$PATH"')
    return "export " + " ".join(parts)


@dataclass(frozen=True)
class Sandbox:
    out_dir: Path
    env: dict[str, str]
    pids: dict[str, int]


def run_sandbox(
    project_dir: Path,
    out_dir: Path,
    *,
    check_seconds: float = 2.0,
    hold_seconds: float = 12.0,
    approval_stage: str | None = "majority",
    on_ready: Callable[[Sandbox], None] = lambda sandbox: None,
    poll_seconds: float = 0.5,
) -> None:
    """Run until interrupted (Ctrl-C, SIGTERM from `rollout demo --stop`); everything started
    is stopped on the way out."""
    out_dir = out_dir.resolve()
    if (out_dir / STATE_FILE).exists() and _alive(_read_state(out_dir).get("pid")):
        raise DemoError(f"a sandbox already runs from {out_dir}: `rollout demo --stop --out {out_dir}` first")
    try:
        project = out_dir / "project"
        release = write_project(
            project_dir, project,
            check_seconds=check_seconds, hold_seconds=hold_seconds, approval_stage=approval_stage,
        )
    except ConfigError as err:
        raise DemoError(str(err)) from err
    except KeyError as err:
        raise DemoError(f"--approval: {err.args[0]}") from err
    stack_file = out_dir / "pulumi-state.json"
    write_state(stack_file, {STACK: stack_state()})  # a new stack for every sandbox
    # this process runs the Automation API too (baseline, first promotion)
    os.environ[STATE_ENV] = str(stack_file)
    os.environ["PATH"] = search_path(os.environ.get("PATH", "/usr/bin:/bin"))
    reports = out_dir / "reports"

    previous = signal.signal(signal.SIGTERM, _interrupt)  # --stop: unwind like Ctrl-C
    try:
        with contextlib.ExitStack() as stack:
            cluster = stack.enter_context(local_cluster(release, out_dir))
            prom = stack.enter_context(Prometheus(cluster.prometheus.url))
            deployer = PulumiDeployer(project, STACK, pulumi_root=ROOT)
            applied: list[str] = []
            try:
                deployer.apply(release.rollback_target.name, "sandbox: baseline before the release")
                _follow(stack_file, cluster, applied)
                cluster.wait_for_stable_scrape(prom)
                ReleaseBot(release, deployer, prom).promote("sandbox: release started by hand")
                _follow(stack_file, cluster, applied)
            except (DeployerError, TimeoutError) as err:
                raise DemoError(f"the sandbox could not start its release: {err}") from err
            env = {
                "PROMETHEUS_URL": cluster.prometheus.url,
                "ALERTMANAGER_URL": cluster.alertmanager.url,
                "ROLLOUT_PROJECT_DIR": str(project),
                "ROLLOUT_REPORT_DIR": str(reports),
                STATE_ENV: str(stack_file),
                "PATH": search_path("").rstrip(":"),
            }
            sandbox = Sandbox(out_dir, env, {
                "sandbox": os.getpid(),
                "prometheus": cluster.prometheus.process.pid,
                "alertmanager": cluster.alertmanager.process.pid,
            })
            (out_dir / STATE_FILE).write_text(json.dumps({"pid": os.getpid(), "pids": sandbox.pids, "env": env}))
            stack.callback(lambda: (out_dir / STATE_FILE).unlink(missing_ok=True))
            (out_dir / ENV_FILE).write_text(export_line(env) + "\n")
            stack.callback(lambda: (out_dir / ENV_FILE).unlink(missing_ok=True))
            on_ready(sandbox)
            while True:
                _follow(stack_file, cluster, applied)
                time.sleep(poll_seconds)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _read_state(out_dir: Path) -> dict:
    try:
        return json.loads((out_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _alive(pid: int | None, name: str | None = None) -> bool:
    """Whether `pid` runs (and, given `name`, runs that program: a reused pid is someone else's)."""
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    if stat[stat.rindex(")") + 2] == "Z":  # exited, not yet reaped by its parent
        return False
    return name is None or name in cmdline


def stop_sandbox(out_dir: Path, timeout: float = 30.0) -> list[str]:
    """Stop the sandbox running from `out_dir`: SIGTERM to it (it stops its servers), then any
    server it left behind (a sandbox killed with SIGKILL). Returns what was stopped."""
    out_dir = out_dir.resolve()
    state = _read_state(out_dir)
    if not state:
        raise DemoError(f"no sandbox runs from {out_dir} (no {STATE_FILE} there)")
    pids: dict[str, int] = state.get("pids", {})
    names = {"sandbox": "rollout", "prometheus": "prometheus", "alertmanager": "alertmanager"}
    stopped = []
    for role in ("sandbox", *[r for r in pids if r != "sandbox"]):
        pid = pids.get(role)
        if not _alive(pid, names.get(role)):
            continue
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid, names.get(role)) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid, names.get(role)):
            os.kill(pid, signal.SIGKILL)
        stopped.append(f"{role} (pid {pid})")
    for name in (STATE_FILE, ENV_FILE):
        (out_dir / name).unlink(missing_ok=True)
    return stopped
