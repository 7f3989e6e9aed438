"""Errors that help (issue 18, item 6), through the `rollout` command as a user meets them:
each names what is wrong and what would be right, once."""

from __future__ import annotations

from pathlib import Path

import yaml
from support import REPO_ROOT as REPO
from support.stack import copy_project
from typer.testing import CliRunner

from rollout.cli import app

runner = CliRunner()
STAGES = "stable, canary, gradual, majority, full"


def rollout(*args: str):  # noqa: ANN201
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_a_wrong_stage_name_lists_the_stages_in_check_render_and_plan(tmp_path: Path) -> None:
    check = rollout("check", "--stage", "canry", "--prometheus", "http://127.0.0.1:9", "-C", str(REPO))
    render = rollout("render", "--stage", "canry", "--out", str(tmp_path / "out"), "-C", str(REPO))
    plan = rollout("plan", "canry", "gradual", "-C", str(REPO))
    for result in (check, render, plan):
        assert result.exit_code == 3, result.output
        assert f"the stages are {STAGES}" in result.stderr, result.stderr
    assert "did you mean 'canary'?" in render.stderr and "did you mean 'canary'?" in plan.stderr
    assert not (tmp_path / "out").exists()


def test_a_missing_stage_file_is_reported_as_that_file(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    (project / "Pulumi.gradual.yaml").unlink()
    for args in (("render", "--stage", "canary", "--out", str(tmp_path / "out")), ("plan", "canary", "majority"),
                 ("check", "--stage", "canary", "--prometheus", "http://127.0.0.1:9")):
        result = rollout(*args, "-C", str(project))
        assert result.exit_code == 3, result.output
        first = result.stderr.splitlines()[0]
        assert first.startswith("error: Pulumi.gradual.yaml:"), (args, result.stderr)
        assert "Pulumi.stable.yaml" not in result.stderr


def _edit(project: Path, stage: str, edit) -> None:  # noqa: ANN001
    path = project / f"Pulumi.{stage}.yaml"
    data = yaml.safe_load(path.read_text())
    edit(data["config"])
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_a_refused_value_is_quoted_once_and_a_misspelled_key_gets_a_suggestion(tmp_path: Path) -> None:
    project = copy_project(tmp_path)

    def break_canary(config: dict) -> None:
        analysis = config["genesis-rollout:analysis"]
        analysis["checkIntervall"] = analysis.pop("checkInterval")  # misspelled nested key
        analysis["hold"] = "4x"  # the model's message quotes the value itself
        config["genesis-rollout:gates"]["errorRat"] = config["genesis-rollout:gates"].pop("errorRate")

    _edit(project, "canary", break_canary)
    (tmp_path / "other").mkdir()
    other = copy_project(tmp_path / "other")  # plan reads every stage file: one broken one here
    _edit(other, "gradual", lambda c: c.__setitem__("genesis-rollout:gate", c.pop("genesis-rollout:gates")))
    canary = rollout("render", "--stage", "canary", "--out", str(tmp_path / "out"), "-C", str(project))
    assert canary.exit_code == 3
    lines = canary.stderr.splitlines()
    assert "  - genesis-rollout:analysis.checkIntervall: unknown key; did you mean 'checkInterval'?" in lines
    assert "  - genesis-rollout:gates.errorRat: unknown key; did you mean 'errorRate'?" in lines
    (hold,) = [line for line in lines if "analysis.hold" in line]
    assert hold.count("(got '4x')") == 1, hold

    gradual = rollout("plan", "gradual", "majority", "-C", str(other))
    assert gradual.exit_code == 3
    assert "genesis-rollout:gate: unknown key; did you mean 'gates'?" in gradual.stderr


def test_scenario_says_an_unknown_name_before_asking_for_out() -> None:
    result = rollout("scenario", "step-erors")
    assert result.exit_code == 3
    assert "unknown scenario 'step-erors'" in result.stderr and "step-errors" in result.stderr
    assert "--out" not in result.stderr


def test_project_dir_that_does_not_exist_or_holds_no_project_is_named(tmp_path: Path) -> None:
    missing = rollout("status", "-C", "/nonexistent")
    assert missing.exit_code == 3
    assert "/nonexistent: no such folder" in missing.stderr
    empty = rollout("check", "--stage", "canary", "-C", str(tmp_path))
    assert empty.exit_code == 3
    assert f"{tmp_path}: no Pulumi.yaml in this folder" in empty.stderr
