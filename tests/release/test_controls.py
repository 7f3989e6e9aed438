"""Operator controls kept with the stack (stack tags through the REAL Automation API; the Pulumi
CLI is the recording stand-in, it cannot be installed here): pause and resume, approvals, the
release policy. They hold back promotion only; rollbacks always run. Prometheus is a scripted
stand-in answering healthy (or failing) values, so the decision is known."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from support.fake_pulumi import REPO, FakePulumi, update
from support.hostile import HostilePrometheus, answering
from support.stack import copy_project, edit_stage_file
from typer.testing import CliRunner

from rollout.cli import app
from rollout.config import load_release
from rollout.release.bot import ReleaseBot
from rollout.release.deployer import PulumiDeployer
from rollout.release.prometheus import Prometheus


def cli(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, list(args), env=env)


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakePulumi:
    monkeypatch.setenv("ROLLOUT_USER", "alice")
    return FakePulumi(tmp_path, monkeypatch)


def seed(fake: FakePulumi, stage: str, hours: float, **tags: str) -> None:
    since = datetime.now(UTC) - timedelta(hours=hours)
    weight = load_release(REPO).stage(stage).weight
    fake.seed(outputs={"stage": stage, "weight": weight},
              history=[update(4, f"rollout: promote stable -> {stage}: ok", since - timedelta(seconds=5), since)],
              tags={"rollout:notified": "4", **tags})


def tick(fake: FakePulumi, project: Path = REPO, **canary: str):
    with HostilePrometheus(answering(**canary)) as prometheus, Prometheus(prometheus.url) as prom:
        bot = ReleaseBot(load_release(project), PulumiDeployer(project, "prod", pulumi_root=fake.root, sleep=fake.sleep), prom)
        return bot.tick()


def common(fake: FakePulumi, project: Path = REPO) -> list[str]:
    return ["-C", str(project), "--pulumi-root", str(fake.root)]


def test_pause_stops_promotion_not_rollback_and_status_says_who(fake: FakePulumi) -> None:
    seed(fake, "canary", hours=49)  # hold over, healthy: due for promotion
    result = cli("pause", "--reason", "INC-7 investigating", *common(fake))
    assert result.exit_code == 0, result.output
    tag = fake.state()["tags"]["rollout:paused"]
    assert tag.startswith("by alice at ") and tag.endswith(": INC-7 investigating")

    outcome = tick(fake)
    assert outcome.decision.action == "wait" and "paused by alice" in outcome.decision.reason
    assert fake.runs_of("up") == []
    status = cli("status", *common(fake))
    assert f"paused: {tag}" in status.output and "promotion: paused by alice" in status.output

    failing = tick(fake, genesis_error_rate="0.05")  # a failing canary still rolls back
    assert failing.decision.action == "rollback" and fake.state()["outputs"]["stage"] == "stable"


def test_resume_lets_the_bot_promote_again(fake: FakePulumi) -> None:
    seed(fake, "canary", hours=49, **{"rollout:paused": "by bob at 2026-11-30T09:00:00Z: INC-9"})
    result = cli("resume", *common(fake))
    assert result.exit_code == 0 and "resumed (was paused by bob" in result.output
    assert "rollout:paused" not in fake.state()["tags"]
    assert tick(fake).decision.action == "promote" and fake.state()["outputs"]["stage"] == "gradual"


def approval_project(tmp_path: Path) -> Path:
    project = copy_project(tmp_path)
    analysis = yaml.safe_load((project / "Pulumi.gradual.yaml").read_text())["config"]["genesis-rollout:analysis"]
    edit_stage_file(project, "gradual", "analysis", {**analysis, "approval": "required"})
    return project


def test_a_stage_that_requires_approval_is_entered_only_once_approved(fake: FakePulumi, tmp_path: Path) -> None:
    project = approval_project(tmp_path)
    seed(fake, "canary", hours=49)
    waiting = tick(fake, project)
    assert waiting.decision.action == "wait" and "`rollout approve gradual`" in waiting.decision.reason
    refused = cli("approve", "majority", *common(fake, project))
    assert refused.exit_code == 3 and "does not need an approval" in refused.output
    result = cli("approve", "gradual", *common(fake, project))
    assert result.exit_code == 0, result.output
    assert fake.state()["tags"]["rollout:approved:gradual"].startswith("update 4 by alice at ")
    assert tick(fake, project).decision.action == "promote"


def test_an_approval_goes_stale_when_the_stack_changes(fake: FakePulumi, tmp_path: Path) -> None:
    """Approved at update 4; a rollback and a new release later, the old approval does not count."""
    project = approval_project(tmp_path)
    seed(fake, "canary", hours=49, **{"rollout:approved:gradual": "update 3 by alice at 2026-11-01T09:00:00Z"})
    outcome = tick(fake, project)
    assert outcome.decision.action == "wait" and "needs an approval" in outcome.decision.reason


def test_promotion_hours_and_freezes_from_the_project_file(fake: FakePulumi, tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    path = project / "Pulumi.yaml"
    data = yaml.safe_load(path.read_text())
    now = datetime.now(UTC)
    data["config"]["genesis-rollout:releasePolicy"] = {"value": {"freezes": [{
        "start": (now - timedelta(days=1)).isoformat(), "end": (now + timedelta(days=1)).isoformat(), "reason": "year end",
    }]}}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    seed(fake, "canary", hours=49)
    outcome = tick(fake, project)
    assert outcome.decision.action == "wait" and "release freeze until" in outcome.decision.reason
    assert "(year end)" in outcome.decision.reason and fake.runs_of("up") == []
    assert tick(fake, project, genesis_error_rate="0.05").decision.action == "rollback"  # rollbacks always run
