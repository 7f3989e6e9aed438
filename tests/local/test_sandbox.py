"""`rollout demo --keep`: the sandbox in which README's operator commands run as written.

Real: Prometheus and Alertmanager on 127.0.0.1, the `rollout` executable, the Automation API.
Stand-ins, because no cluster and no Pulumi CLI run here: the synthetic pods and the recording
Pulumi CLI (rollout/local/pulumi_standin). The sandbox runs as its own process, as a user
starts it, and every command runs through bash with the environment the sandbox printed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import REPO_ROOT as REPO

from rollout.review.localstack import wait_for

ROLLOUT = str(Path(sys.executable).parent / "rollout")
# exit codes README documents as a result rather than an error, per command
OUTCOMES = {"preflight": {0, 1}, "check": {0, 1, 2}}
pytestmark = pytest.mark.timeout(600)  # a hang guard; the README run gets more (below)
# What a terminal gives the programs it starts: Ctrl-C and Ctrl-\ are not ignored. A suite run as
# a background job of a non-interactive shell (`bash .ci/run &`) inherits SIGINT and SIGQUIT
# ignored (POSIX), and bash or Python started with a signal ignored never catches it, so the
# Ctrl-C these tests send would be lost. Reset both to the default, then exec the command.
AS_FROM_A_TERMINAL = [sys.executable, "-c", "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                      "signal.signal(signal.SIGQUIT, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])"]


def operator_commands() -> list[str]:
    """The sh block after README's `<!-- operator-commands -->` marker, one command a line."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"<!-- operator-commands -->\n```sh\n(.*?)\n```", text, re.S)
    assert block, "README has no operator-commands block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


class Sandbox:
    def __init__(self, out: Path, process: subprocess.Popen[bytes], log: Path) -> None:
        self.out, self.process, self.log = out, process, log

    @property
    def env_file(self) -> Path:
        return self.out / "sandbox.env"

    def pids(self) -> dict[str, int]:
        return json.loads((self.out / "sandbox.json").read_text())["pids"]

    def shell(self, line: str, cwd: Path, **kwargs) -> subprocess.Popen[str]:  # noqa: ANN003
        """`line` as a user types it after `source sandbox.env`."""
        return subprocess.Popen([*AS_FROM_A_TERMINAL, "bash", "-c", f"source {self.env_file} && {line}"], cwd=cwd,
                                text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)

    def stand_in_state(self) -> dict:
        return json.loads((self.out / "pulumi-state.json").read_text())["stacks"]["prod"]


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    out, log = tmp_path / "demo-out", tmp_path / "sandbox.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [*AS_FROM_A_TERMINAL, ROLLOUT, "demo", "--keep", "--out", str(out), "-C", str(REPO), "--check-seconds", "1",
             "--hold-seconds", "6"],
            stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
        )
    box = Sandbox(out, process, log)
    try:
        wait_for(lambda: box.env_file.exists() or process.poll() is not None, 300, "the sandbox to be ready")
        assert process.poll() is None, log.read_text()
        yield box
    finally:  # whatever a test left: the sandbox's process group holds its servers too
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


@pytest.mark.timeout(1800)  # 17 commands, each a `rollout` process and several Pulumi stand-in calls:
# about 4 minutes alone, 8 times that on a 2-core machine running three suites at once
def test_readme_operator_commands_run_as_written_in_the_sandbox(sandbox: Sandbox, tmp_path: Path) -> None:
    printed = sandbox.log.read_text()
    assert sandbox.env_file.read_text().strip() in printed  # the line to eval is printed too
    assert sandbox.stand_in_state()["outputs"]["stage"] == "canary"  # a release in progress
    lines = operator_commands()
    assert any(line.startswith("rollout approve majority") for line in lines)
    seen: dict[str, str] = {}
    for line in lines:
        command = line.split()[1]
        if "--watch" in line:  # a live view: runs until Ctrl-C
            shell = sandbox.shell(line, tmp_path, start_new_session=True)
            first = shell.stdout.readline() if shell.stdout else ""  # blocks until the first frame is drawn
            assert first.startswith("stack prod"), (line, first, shell.poll())
            os.killpg(shell.pid, signal.SIGINT)
            stdout, stderr = shell.communicate(timeout=60)
            assert shell.returncode == 0, (line, stdout, stderr)
            assert "Traceback" not in stderr, stderr
            continue
        shell = sandbox.shell(line, tmp_path)
        stdout, stderr = shell.communicate(timeout=300)
        assert shell.returncode in OUTCOMES.get(command, {0}), (line, shell.returncode, stdout, stderr)
        assert "Traceback" not in stderr, stderr
        seen[line] = stdout

    state = sandbox.stand_in_state()
    approve = next(line for line in lines if line.startswith("rollout approve"))
    assert "approved promotion into 'majority'" in seen[approve]
    assert state["tags"]["rollout:approved:majority"].startswith("update ")
    pause = next(line for line in lines if line.startswith("rollout pause"))
    assert "INC-42" in seen[pause] and "rollout:paused" not in state["tags"]  # resumed afterwards
    assert state["outputs"]["stage"] == "stable"  # the rollback went through the stand-in
    history = [entry["message"] for entry in state["history"]]
    assert any(m.startswith("rollout: promote canary -> gradual") and m.endswith("looks good") for m in history)
    assert any(m.startswith("rollout: rollback ") for m in history)
    reports = sandbox.out / "reports"
    assert list(reports.glob("*-rollback-*-to-stable.md")) and list(reports.glob("daily-*.md"))
    assert (tmp_path / "rendered" / "manifests").is_dir()
    status_json = next(line for line in lines if line.startswith("rollout status --json"))
    view = json.loads(seen[status_json])
    assert view["ladder"][1] == {"stage": "canary", "weight": 10, "state": "current", "approval": False}
    assert 0 < view["measured_weight"]["genesis"] < 30  # about 10% of the synthetic traffic

    pids = sandbox.pids()
    stop = subprocess.run([ROLLOUT, "demo", "--stop", "--out", str(sandbox.out)], capture_output=True, text=True,
                          timeout=120)
    assert stop.returncode == 0, stop.stderr
    assert sandbox.process.wait(timeout=60) == 0
    assert not [name for name, pid in pids.items() if alive(pid)]
    assert not sandbox.env_file.exists() and not (sandbox.out / "sandbox.json").exists()


def test_ctrl_c_tears_the_sandbox_down(sandbox: Sandbox) -> None:
    pids = sandbox.pids()
    assert set(pids) == {"sandbox", "prometheus", "alertmanager"} and all(alive(p) for p in pids.values())
    os.killpg(sandbox.process.pid, signal.SIGINT)  # what Ctrl-C in its terminal sends
    assert sandbox.process.wait(timeout=60) == 0
    assert not [name for name, pid in pids.items() if alive(pid)]
    assert not sandbox.env_file.exists()
    stop = subprocess.run([ROLLOUT, "demo", "--stop", "--out", str(sandbox.out)], capture_output=True, text=True,
                          timeout=60)
    assert stop.returncode == 3 and "no sandbox runs from" in stop.stderr


def test_stop_after_the_sandbox_was_killed_ends_its_servers(sandbox: Sandbox) -> None:
    """A sandbox killed with SIGKILL cannot stop its servers; --stop finds them in sandbox.json."""
    pids = sandbox.pids()
    os.kill(pids["sandbox"], signal.SIGKILL)
    sandbox.process.wait(timeout=30)
    assert alive(pids["prometheus"]) and alive(pids["alertmanager"])
    stop = subprocess.run([ROLLOUT, "demo", "--stop", "--out", str(sandbox.out)], capture_output=True, text=True,
                          timeout=120)
    assert stop.returncode == 0, stop.stderr
    assert "prometheus" in stop.stdout and "alertmanager" in stop.stdout
    wait_for(lambda: not alive(pids["prometheus"]) and not alive(pids["alertmanager"]), 30, "the servers to stop")


def test_the_sandbox_runs_the_stages_its_files_say(tmp_path: Path) -> None:
    """The sandbox process (baseline, first promotion, the cluster's alert rules) and the operator
    commands in another shell (reading the copied files) see the same stages, also for a
    --check-seconds a stage file cannot say (1.5 s is written as 2 s)."""
    from rollout.config import load_release
    from rollout.local.sandbox import write_project

    release = write_project(REPO, tmp_path / "project", check_seconds=1.5, hold_seconds=7.4, approval_stage="majority")
    files = load_release(tmp_path / "project")
    assert [s.analysis for s in release.stages] == [s.analysis for s in files.stages]
    assert release.stages[1].analysis.check_interval.total_seconds() == 2
    assert release.stage("majority").analysis.approval == "required"
    assert release.project.monitoring.alerting.group_wait.total_seconds() == 1  # the demo's alert grouping
