"""CLI conventions (issue 18, item 7): --version, shell completion, --json on every command that
reports something with its errors as JSON too, and help text for every option.

The operator commands run through the REAL Automation API against the recording Pulumi CLI
stand-in (rollout/local/pulumi_standin: the Pulumi CLI cannot be installed here); Prometheus is a
scripted stand-in answering healthy values (support.hostile), so the decisions are known."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from support.fake_pulumi import REPO, FakePulumi, update
from support.hostile import HostilePrometheus, answering
from support.stack import copy_project, edit_stage_file
from typer.main import get_command
from typer.testing import CliRunner

from rollout.cli import app

runner = CliRunner()


def rollout(*args: str, env: dict[str, str] | None = None):  # noqa: ANN201
    return runner.invoke(app, list(args), env=env, catch_exceptions=False)


def test_version_is_the_installed_package_version() -> None:
    result = rollout("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"rollout {version('genesis-rollout')}"


def test_shell_completion_is_offered_and_completes_commands() -> None:
    assert "--install-completion" in rollout("--help").stdout
    exe = str(Path(sys.executable).parent / "rollout")  # the console script, as a shell runs it
    script = subprocess.run([exe, "--show-completion", "bash"], capture_output=True, text=True, timeout=60)
    assert script.returncode == 0 and "complete -o default -F _rollout_completion rollout" in script.stdout
    # what that bash completion asks the executable while someone types `rollout sta<TAB>`
    env = {**os.environ, "_ROLLOUT_COMPLETE": "complete_bash", "COMP_WORDS": "rollout sta", "COMP_CWORD": "1"}
    answer = subprocess.run([exe], env=env, capture_output=True, text=True, timeout=60)
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.split() == ["status"]


def test_every_option_and_argument_has_help_text() -> None:
    root = get_command(app)
    bare = [
        f"{name} {param.opts[0]}"
        for name, command in root.commands.items()  # type: ignore[attr-defined]
        for param in command.params
        if not (getattr(param, "help", None) or "").strip()
    ]
    assert bare == []
    for name, command in root.commands.items():  # type: ignore[attr-defined]
        text = rollout(name, "--help").stdout
        if any(p.name == "as_json" for p in command.params):
            assert "--json" in text
        # a flag's row is its help text; typer's own --help is the only `<bool>` left
        assert [line for line in text.splitlines() if "<bool>" in line and "--help" not in line] == [], name


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakePulumi:
    monkeypatch.setenv("ROLLOUT_USER", "alice")
    monkeypatch.setenv("ROLLOUT_NOTIFY_ATTEMPTS", "1")
    fake = FakePulumi(tmp_path, monkeypatch)
    since = datetime.now(UTC) - timedelta(hours=1)
    fake.seed(outputs={"stage": "canary", "weight": 10},
              history=[update(4, "rollout: promote stable -> canary: ok", since - timedelta(seconds=5), since)],
              tags={"rollout:notified": "4"})
    return fake


def test_operator_commands_report_as_json(fake: FakePulumi, tmp_path: Path) -> None:
    common = ["-C", str(REPO), "--pulumi-root", str(fake.root)]
    with HostilePrometheus(answering()) as prometheus:
        bot = [*common, "--prometheus", prometheus.url, "--report-dir", str(tmp_path / "reports")]

        paused = json.loads(rollout("pause", "--reason", "INC-42", "--json", *common).stdout)
        assert paused["action"] == "pause" and paused["paused"].endswith(": INC-42")
        resumed = json.loads(rollout("resume", "--json", *common).stdout)
        assert resumed == {"action": "resume", "was_paused": paused["paused"]}
        assert json.loads(rollout("resume", "--json", *common).stdout) == {"action": "resume", "was_paused": None}

        promoted = rollout("promote", "--reason", "by hand", "--json", *bot)
        assert promoted.exit_code == 0, promoted.output
        data = json.loads(promoted.stdout)
        assert data["applied"]["stage"] == "gradual" and data["decision"]["action"] == "promote"

        lines = rollout("watch", "--max-ticks", "1", "--json", *bot).stdout.splitlines()
        assert len(lines) == 1 and json.loads(lines[0])["stage"] == "gradual"

        rolled = json.loads(rollout("rollback", "--reason", "drill", "--json", *bot).stdout)
        assert rolled["applied"]["stage"] == "stable" and rolled["decision"]["action"] == "rollback"
        promoted_again = json.loads(rollout("promote", "--json", *bot).stdout)
        assert promoted_again["applied"]["stage"] == "canary"


def test_approve_reports_as_json(fake: FakePulumi, tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    analysis = yaml.safe_load((project / "Pulumi.gradual.yaml").read_text())["config"]["genesis-rollout:analysis"]
    edit_stage_file(project, "gradual", "analysis", {**analysis, "approval": "required"})
    result = rollout("approve", "gradual", "--json", "-C", str(project), "--pulumi-root", str(fake.root))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["action"] == "approve" and data["stage"] == "gradual"
    assert data["approved"] == fake.state()["tags"]["rollout:approved:gradual"]


@pytest.mark.parametrize("args", [
    ["status"], ["promote"], ["rollback"], ["pause", "--reason", "x"], ["resume"], ["approve", "majority"],
    ["watch", "--max-ticks", "1"], ["tick"], ["preflight"], ["check", "--stage", "canary"],
    ["replay", "--metrics", "x.om", "--start", "0", "--stage", "canary"], ["plan", "canary", "gradual"],
])
def test_errors_under_json_are_json_with_the_exit_code(args: list[str]) -> None:
    result = rollout(*args, "--json", "-C", "/nonexistent")
    assert result.exit_code == 3
    assert json.loads(result.stdout) == {"error": "--project-dir /nonexistent: no such folder", "exit": 3}


def test_an_error_after_the_start_is_json_too(fake: FakePulumi) -> None:
    """approve of a stage that needs none: refused by the command itself, not the option parsing."""
    result = rollout("approve", "majority", "--json", "-C", str(REPO), "--pulumi-root", str(fake.root))
    assert result.exit_code == 3
    error = json.loads(result.stdout)
    assert error["exit"] == 3 and "does not need an approval" in error["error"]
    assert "does not need an approval" in result.stderr  # people still read stderr
