"""The release bot end to end against a REAL Prometheus fed by synthetic Genesis pods, deploying
through the REAL Automation API. Only the Pulumi CLI is a stand-in (rollout/local/pulumi_standin: it cannot
be installed here); the stage files it is handed are the repo's own.

The bot is given the repo's release with compressed timing (1 s checks, 10 s window, 30 s hold)
and an injected clock, so the checks it re-runs at past instants are reproducible.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pytest
from support.fake_pulumi import REPO, FakePulumi, update
from support.hostile import HostilePrometheus, answering
from support.live import LiveStack, compressed_config, live_stack

from rollout.analysis.decision import check_times
from rollout.config import load_release
from rollout.model import Release
from rollout.release.bot import ReleaseBot, check_release
from rollout.release.deployer import PulumiDeployer, StackLockedError
from rollout.release.prometheus import Prometheus, PrometheusError
from rollout.release.notify import AlertmanagerClient, ReleaseNotifier
from rollout.review.localstack import start_alertmanager, start_prometheus, wait_for

APP = "genesis"


def compressed_release(config) -> Release:  # noqa: ANN001
    """The repo's five stages, each with the live stack's compressed analysis."""
    release = load_release(REPO)
    stages = [s.model_copy(update={"analysis": config.stage.analysis}) for s in release.stages]
    return Release(project=config.project, stages=stages)


@pytest.fixture(scope="module")
def live() -> Iterator[LiveStack]:
    config = compressed_config([APP], min_canary_requests=20)
    with live_stack(config, {APP: "healthy"}) as stack:
        stack.wait_for_full_window()
        yield stack


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakePulumi:
    return FakePulumi(tmp_path, monkeypatch)


def seed_stage(fake: FakePulumi, stage: str, weight: int, since: datetime, **extra) -> None:  # noqa: ANN003
    """A stack at `stage` since `since`, whose promotion was told (rollout:notified names it)."""
    fake.seed(
        outputs={"stage": stage, "weight": weight},
        history=[update(1, f"rollout: promote stable -> {stage}: test", since - timedelta(seconds=20), since)],
        **{"tags": {"rollout:notified": "1"}, **extra},
    )


def wait_until_healthy(live: LiveStack) -> None:
    """The canary healthy across the last three 1 s checks (an earlier test may have made it bad)."""
    live.workloads[(APP, "canary")].set_profile("healthy")
    release = compressed_release(live.config)
    stage = release.stage("canary")

    def healthy() -> bool:
        now = datetime.now(timezone.utc)
        return all(
            check_release(release, live.prom, stage, now - timedelta(seconds=back)).verdict == "pass"
            for back in (0, 1, 2)
        )

    wait_for(healthy, 40, "three passing checks in a row", interval=0.5)


def bot_at(live: LiveStack, fake: FakePulumi, now: datetime) -> ReleaseBot:
    """A fresh bot (as after a restart): nothing carried over but what the stack and Prometheus hold."""
    deployer = PulumiDeployer(REPO, "prod", pulumi_root=fake.root, sleep=fake.sleep)
    return ReleaseBot(compressed_release(live.config), deployer, live.prom, clock=lambda: now)


def test_tick_promotes_a_healthy_canary_after_its_hold(live: LiveStack, fake: FakePulumi) -> None:
    wait_until_healthy(live)
    now = datetime.now(timezone.utc)
    seed_stage(fake, "canary", 10, now - timedelta(seconds=31))

    outcome = bot_at(live, fake, now).tick()

    assert [c.verdict for c in outcome.checks] == ["pass", "pass", "pass"], [c.reason for c in outcome.checks]
    assert outcome.decision.action == "promote", outcome.decision.reason
    ups = fake.runs_of("up")
    assert len(ups) == 1
    argv = ups[0]["argv"]
    assert argv[argv.index("--config-file") + 1] == "Pulumi.gradual.yaml"
    assert fake.state()["outputs"]["stage"] == "gradual"


def test_tick_waits_while_the_hold_runs(live: LiveStack, fake: FakePulumi) -> None:
    now = datetime.now(timezone.utc)
    seed_stage(fake, "canary", 10, now - timedelta(seconds=12))

    outcome = bot_at(live, fake, now).tick()

    assert outcome.decision.action == "wait"
    assert "hold" in outcome.decision.reason
    assert fake.runs_of("up") == []


def test_a_restarted_bot_counts_the_failures_seen_before_the_restart(live: LiveStack, fake: FakePulumi) -> None:
    canary = live.workloads[(APP, "canary")]
    since = datetime.now(timezone.utc) - timedelta(seconds=5)
    canary.set_profile("bad")
    try:
        stage = compressed_release(live.config).stage("canary")
        # wait until three checks in a row have failed, then find the first such run
        def failing_run() -> tuple[datetime, datetime] | None:
            now = datetime.now(timezone.utc)
            times = check_times(stage, since, now, count=60)
            verdicts = [check_release(compressed_release(live.config), live.prom, stage, t).verdict for t in times]
            for i in range(len(verdicts) - 2):
                if verdicts[i : i + 3] == ["fail"] * 3 and (i == 0 or verdicts[i - 1] != "fail"):
                    return times[i + 1], times[i + 2]
            return None

        second_fail, third_fail = wait_for(failing_run, 40, "three failing checks in a row", interval=1.0)
    finally:
        canary.set_profile("healthy")
    seed_stage(fake, "canary", 10, since)

    before_restart = bot_at(live, fake, second_fail).tick()
    assert before_restart.decision.action == "wait", before_restart.decision.reason
    assert "2 of 3 consecutive failures" in before_restart.decision.reason
    assert fake.runs_of("up") == []

    after_restart = bot_at(live, fake, third_fail).tick()  # a new bot: no memory of the first
    assert after_restart.decision.action == "rollback", after_restart.decision.reason
    ups = fake.runs_of("up")
    assert len(ups) == 1
    argv = ups[0]["argv"]
    assert argv[argv.index("--config-file") + 1] == "Pulumi.stable.yaml"
    assert argv[argv.index("--message") + 1].startswith("rollout: rollback canary -> stable: the last 3 checks failed")


def test_a_locked_stack_is_not_applied_and_not_retried(live: LiveStack, fake: FakePulumi) -> None:
    wait_until_healthy(live)
    now = datetime.now(timezone.utc)
    seed_stage(fake, "canary", 10, now - timedelta(seconds=31), lock="service")

    with pytest.raises(StackLockedError):
        bot_at(live, fake, now).tick()

    assert len(fake.runs_of("up")) == 1  # the one refused attempt, never a second


def test_prometheus_going_away_mid_stage_never_promotes(fake: FakePulumi) -> None:
    config = compressed_config([APP])
    running = start_prometheus(scrape_interval="1s", eval_interval="1s")
    prom = Prometheus(running.url, timeout=1.0, retries=1, backoff=0.05)
    now = datetime.now(timezone.utc)
    seed_stage(fake, "canary", 10, now - timedelta(seconds=31))
    bot = ReleaseBot(
        compressed_release(config), PulumiDeployer(REPO, "prod", pulumi_root=fake.root, sleep=fake.sleep), prom, clock=lambda: now
    )
    assert bot.tick().decision.action == "wait"  # reachable but no data: holds, never promotes
    running.stop()

    with pytest.raises(PrometheusError, match="unreachable"):
        bot.tick()
    assert fake.runs_of("up") == []
    prom.close()


class RecordingHook:
    def __init__(self) -> None:
        self.changes = []

    def stage_changed(self, change):  # noqa: ANN001, ANN201
        self.changes.append(change)
        return f"recorded {change.action}"


def test_a_complete_release_applies_nothing_is_announced_once_and_says_what_comes_next(live: LiveStack, fake: FakePulumi) -> None:
    wait_until_healthy(live)
    now = datetime.now(timezone.utc)
    seed_stage(fake, "full", 100, now - timedelta(seconds=31))
    hook = RecordingHook()
    bot = ReleaseBot(
        compressed_release(live.config), PulumiDeployer(REPO, "prod", pulumi_root=fake.root, sleep=fake.sleep), live.prom,
        hooks=[hook], clock=lambda: now,
    )

    outcome = bot.tick()

    assert outcome.decision.action == "complete", outcome.decision.reason
    assert fake.runs_of("up") == []
    assert [(c.action, c.source, c.target) for c in hook.changes] == [("complete", "full", "full")]
    assert fake.state()["tags"]["rollout:completed"] == "1"  # the update whose completion was told
    assert any("releaseFlags" in effect for effect in outcome.effects)
    again = bot.tick()  # every later tick says 'complete' again: nobody hears it twice
    assert again.decision.action == "complete" and len(hook.changes) == 1


def test_hooks_hear_of_a_rollback_and_a_failing_hook_never_blocks_it(live: LiveStack, fake: FakePulumi) -> None:
    now = datetime.now(timezone.utc)
    seed_stage(fake, "gradual", 50, now - timedelta(seconds=5))

    class Broken:
        def stage_changed(self, change):  # noqa: ANN001, ANN201
            raise RuntimeError("Alertmanager is down")

    hook = RecordingHook()
    bot = ReleaseBot(
        compressed_release(live.config), PulumiDeployer(REPO, "prod", pulumi_root=fake.root, sleep=fake.sleep), live.prom,
        hooks=[Broken(), hook], clock=lambda: now, sleep=fake.sleep,
    )
    outcome = bot.rollback("on-call decision")

    assert len(fake.runs_of("up")) == 1  # rolled back first...
    assert [c.action for c in hook.changes] == ["rollback"] and hook.changes[0].target == "stable"
    assert outcome.warnings == ["Broken failed: Alertmanager is down (after 3 attempts)"]  # ...then told, retried
    assert fake.sleeps == [2.0, 4.0]  # bounded backoff between the attempts
    assert outcome.effects == ["recorded rollback"] and outcome.notified is False
    assert fake.state()["tags"]["rollout:notified"] == "1"  # still the old change: the next tick tells this one


def test_several_services_merge_into_one_check_where_the_worst_verdict_wins() -> None:
    """Pure: no Prometheus needed. One bad service fails the stage; gate names say which."""
    from rollout.analysis.gates import GateMeasurement, Measurements, evaluate
    from rollout.release.bot import merge_service_checks

    stage = load_release(REPO).stage("canary")
    healthy = {"error_rate": 0.0, "p95_latency_seconds": 0.1, "test_pass_rate": 1.0,
               "pipelex_success_rate": 0.99, "spice_tasks_per_minute": 5.0, "fallback_rate": 0.0}

    def check(overrides: dict[str, float], requests: float):  # noqa: ANN202
        values = {**healthy, **overrides}
        gates = {k: GateMeasurement(canary=v, stable=v, query=k) for k, v in values.items()}
        ready = GateMeasurement(canary=1.0, stable=1.0, query="available")
        return evaluate(stage, Measurements(gates=gates, canary_requests=requests, availability=ready))

    merged = merge_service_checks(stage, [
        ("genesis", check({}, 900)),
        ("planner", check({"error_rate": 0.05}, 400)),
    ])

    assert merged.verdict == "fail"
    assert merged.reason.startswith("planner: critical threshold breached")
    assert len(merged.gates) == 14  # 6 gates and the canary's availability, per service
    failed = [g.name for g in merged.gates if g.status == "fail"]
    assert failed == ["planner/error_rate"]
    assert merged.canary_requests == 400  # the thinnest service decides whether there is enough data
    single = check({}, 900)
    assert merge_service_checks(stage, [("genesis", single)]) is single  # one service: unchanged names


def test_a_tick_first_finishes_a_stage_change_stopped_between_its_phases(fake: FakePulumi) -> None:
    """The bot died after the rollback's shift, before the scale-down: the next tick replays the
    change from its source before judging anything (no Prometheus query is needed or made)."""
    services = {"genesis": {"resources": {
        "deployments": {"stable": "urn:s", "canary": "urn:c"}, "routing": ["urn:route"],
        "flags": {"stable": "urn:fs", "canary": "urn:fc"},
    }}}
    start = datetime(2026, 11, 7, 9, 0, tzinfo=timezone.utc)
    fake.seed(
        outputs={"stage": "stable", "weight": 0, "services": services},
        history=[
            update(6, "rollout: rollback majority -> stable [1/2 shift]: p95 0.8s > 0.5s", start + timedelta(hours=2)),
            update(5, "rollout: promote gradual -> majority: ok", start, start + timedelta(minutes=1)),
        ],
    )
    deployer = PulumiDeployer(REPO, "prod", pulumi_root=fake.root, sleep=fake.sleep)
    unreachable = Prometheus("http://127.0.0.1:9", retries=0)
    outcome = ReleaseBot(load_release(REPO), deployer, unreachable).tick()
    assert outcome.decision.action == "rollback"
    assert outcome.decision.reason.startswith("finishing the interrupted stage change majority -> stable")
    messages = [run["argv"][run["argv"].index("--message") + 1] for run in fake.runs_of("up")]
    assert messages == [
        "rollout: rollback majority -> stable [1/2 shift]: p95 0.8s > 0.5s",
        "rollout: rollback majority -> stable [2/2 scale-down]: p95 0.8s > 0.5s",
    ]
    assert unreachable.queries == 0 and fake.sleeps == [30.0]
    state = deployer.current()
    assert state.pending is None and state.stage == "stable"


# --------------------------------------------------------------------------- compare-and-apply, a rollback that fails (moved from the probes of issue 10)


@pytest.fixture
def alertmanager() -> Iterator[str]:
    with start_alertmanager({"route": {"receiver": "null"}, "receivers": [{"name": "null"}]}) as running:
        yield running.url


def test_a_manual_rollback_landing_during_a_tick_is_never_overwritten_by_the_ticks_promotion(
    fake: FakePulumi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was: the tick then applied "promote stable -> gradual". Now: compare-and-apply sees the new
    head update, the tick decides again on it (stable: nothing to do)."""
    now = datetime.now(UTC)
    seed_stage(fake, "canary", 10, now - timedelta(hours=49))
    import rollout.release.bot as bot_module

    real_decide = bot_module.decide
    landed = []

    def decide_while_someone_rolls_back(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        decision = real_decide(*args, **kwargs)
        if not landed:  # the person's command lands between the tick's read and its apply
            landed.append(PulumiDeployer(REPO, "prod", pulumi_root=fake.root, sleep=fake.sleep).apply(
                "stable", "rolled back by hand: INC-7"))
        return decision

    monkeypatch.setattr(bot_module, "decide", decide_while_someone_rolls_back)
    with HostilePrometheus(answering()) as prometheus, Prometheus(prometheus.url) as prom:
        bot = ReleaseBot(load_release(REPO), PulumiDeployer(REPO, "prod", pulumi_root=fake.root, sleep=fake.sleep), prom,
                         clock=lambda: now)
        outcome = bot.tick()
    messages = [run["argv"][run["argv"].index("--message") + 1] for run in fake.runs_of("up")]
    assert messages == ["rollout: rollback canary -> stable: rolled back by hand: INC-7"]  # no promotion
    assert fake.state()["outputs"]["stage"] == "stable"
    assert outcome.decision.action == "wait" and any("decided again" in w for w in outcome.warnings)


def test_a_manual_command_refuses_a_stale_view(fake: FakePulumi) -> None:
    seed_stage(fake, "gradual", 50, datetime.now(UTC) - timedelta(hours=1))
    deployer = PulumiDeployer(REPO, "prod", pulumi_root=fake.root, sleep=fake.sleep)
    state = deployer.current()
    PulumiDeployer(REPO, "prod", pulumi_root=fake.root, sleep=fake.sleep).apply("stable", "someone else")
    from rollout.release.deployer import StaleStateError

    with pytest.raises(StaleStateError, match="the stack changed after this decision"):
        deployer.apply("majority", "promote on an old view", expect_head=state.head_version)
    assert len(fake.runs_of("up")) == 1


@pytest.mark.parametrize("lock", ["service", None], ids=["stack-locked", "up-failed"])
def test_a_rollback_that_cannot_be_applied_pages_and_is_reported(
    fake: FakePulumi, alertmanager: str, tmp_path: Path, lock: str | None
) -> None:
    """Was: exit 3, nobody paged, no report."""
    seed_stage(fake, "majority", 80, datetime.now(UTC) - timedelta(hours=1))
    state = fake.state()
    fake.seed(outputs=state["outputs"], history=state["history"], tags=state["tags"], lock=lock, fail_next_up=lock is None)
    from rollout.release.hooks import StageReportWriter

    service = load_release(REPO).project.services[0]
    notifier = ReleaseNotifier(app="genesis", namespace="genesis", runbook_base_url="https://r.example",
                               alertmanager=AlertmanagerClient(alertmanager),
                               report_writer=StageReportWriter(tmp_path, load_release(REPO), service))
    bot = ReleaseBot(load_release(REPO), PulumiDeployer(REPO, "prod", pulumi_root=fake.root, sleep=fake.sleep),
                     Prometheus("http://127.0.0.1:9"), hooks=[notifier], sleep=fake.sleep)
    from rollout.release.deployer import DeployerError

    with pytest.raises(DeployerError):
        bot.rollback("error rate 3% on 3 checks")
    (page,) = AlertmanagerClient(alertmanager).alerts({"alertname": "GenesisRollbackFailed"})
    assert page["labels"]["severity"] == "critical" and page["labels"]["stage"] == "majority"
    assert "the canary still has traffic" in page["annotations"]["summary"]
    (report,) = tmp_path.glob("*-rollback-majority-to-stable-failed.md")
    text = report.read_text()
    assert "NOT APPLIED" in text and "error rate 3% on 3 checks" in text
