"""A canary whose pods never become ready is rolled back, end to end: a REAL Prometheus scrapes
the kube-state-metrics stand-in (it reports 0 of 1 canary pods ready) and a canary that exports
nothing, with the stage's real rules; the bot ticks through the REAL Automation API. Stand-ins:
the Pulumi CLI (rollout/local/pulumi_standin) and kube-state-metrics (no cluster runs here).
Compressed timing: 1 s checks, a 10 s window, a 5 s progress deadline."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pytest
from support.fake_pulumi import REPO, FakePulumi, update
from support.live import LiveStack, compressed_config, live_stack

from rollout.analysis.gates import AVAILABILITY
from rollout.config import load_release
from rollout.model import Release
from rollout.release.bot import ReleaseBot
from rollout.release.deployer import PulumiDeployer
from rollout.review.localstack import wait_for

APP = "genesis"


@pytest.fixture(scope="module")
def live() -> Iterator[LiveStack]:
    config = compressed_config([APP])
    with live_stack(config, {APP: "silent"}, never_ready=[APP]) as stack:
        stack.wait_for_full_window()
        yield stack


def compressed_release(config) -> Release:  # noqa: ANN001
    release = load_release(REPO)
    return Release(
        project=config.project,
        stages=[s.model_copy(update={"analysis": config.stage.analysis}) for s in release.stages],
    )


def test_a_canary_that_never_becomes_ready_is_rolled_back(live: LiveStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakePulumi(tmp_path, monkeypatch)
    now = datetime.now(timezone.utc)
    since = now - timedelta(seconds=15)  # past the 5 s deadline and a whole 10 s window
    fake.seed(
        outputs={"stage": "canary", "weight": 10},
        history=[update(1, "rollout: promote stable -> canary: day 1", since - timedelta(seconds=5), since)],
    )
    deployer = PulumiDeployer(REPO, "prod", pulumi_root=fake.root, sleep=fake.sleep)
    bot = ReleaseBot(compressed_release(live.config), deployer, live.prom, clock=lambda: now)

    def decided():  # the 15 s of scrapes the availability window needs may still be arriving
        outcome = bot.tick()
        return outcome if outcome.decision.action == "rollback" else None

    outcome = wait_for(decided, 30, "the bot to roll the dead canary back", interval=1.0)
    newest = outcome.checks[-1]
    assert newest.verdict == "fail" and newest.immediate, newest.reason
    assert newest.canary_requests is None  # the canary said nothing itself
    assert next(g for g in newest.gates if g.name == AVAILABILITY).value == 0
    assert outcome.decision.reason.startswith("the newest check failed at once: canary unavailable")
    messages = [run["argv"][run["argv"].index("--message") + 1] for run in fake.runs_of("up")]
    assert messages and all(m.startswith("rollout: rollback canary -> stable") for m in messages)
    assert fake.state()["outputs"]["stage"] == "stable"
