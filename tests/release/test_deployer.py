"""PulumiDeployer through the real Automation API (pulumi 3.272) against a recording CLI stand-in.

The Pulumi CLI cannot be installed here, so `rollout/local/pulumi_standin/bin/pulumi` stands in for it at
the process boundary: everything above it (LocalWorkspace, Stack.up/preview/history/outputs,
the SDK's error mapping, its version check) is the real SDK code.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from support.fake_pulumi import REPO, FakePulumi, update

from rollout.config import ConfigError
from rollout.release.deployer import (
    DeployerError,
    PulumiDeployer,
    StackLockedError,
    cli_env_from_files,
    parse_update_message,
    update_message,
)

T0 = datetime(2026, 11, 3, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakePulumi:
    return FakePulumi(tmp_path, monkeypatch)


def deployer(fake: FakePulumi) -> PulumiDeployer:
    return PulumiDeployer(REPO, "prod", pulumi_root=fake.root, sleep=fake.sleep)


def seed_canary(fake: FakePulumi) -> None:
    fake.seed(
        outputs={"stage": "canary", "weight": 10},
        history=[update(1, "rollout: promote stable -> canary: day 1", T0, T0 + timedelta(seconds=40))],
    )


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_promote_runs_up_once_with_the_stage_file_and_a_parseable_message(fake: FakePulumi) -> None:
    seed_canary(fake)
    result = deployer(fake).apply("gradual", "3 passing checks and the 48h hold is over")

    ups = fake.runs_of("up")
    assert len(ups) == 1
    argv = ups[0]["argv"]
    assert argv[:4] == ["--non-interactive", "up", "--yes", "--skip-preview"]
    assert option(argv, "--config-file") == "Pulumi.gradual.yaml"
    assert option(argv, "--stack") == "prod"
    assert option(argv, "--exec-kind") == "auto.local"
    message = option(argv, "--message")
    assert message == "rollout: promote canary -> gradual: 3 passing checks and the 48h hold is over"
    assert ups[0]["cwd"] == str(REPO)
    assert ups[0]["env"]["PULUMI_AUTOMATION_API"] == "true"

    assert (result.action, result.previous_stage, result.stage, result.weight) == (
        "promote", "canary", "gradual", 50,
    )
    assert result.message == message
    assert result.version == 2
    # the update (with its message) is now the newest entry of the stack's history: the audit trail
    assert fake.state()["history"][0]["message"] == message


def test_the_exact_command_sequence_of_a_promotion(fake: FakePulumi) -> None:
    seed_canary(fake)
    deployer(fake).apply("gradual", "why")
    commands = [c for c in fake.commands() if c[:1] != ["up"]]
    assert commands == [
        ["version"],
        ["stack", "select", "--stack", "prod"],
        ["stack", "output", "--json", "--stack", "prod"],
        ["stack", "output", "--json", "--show-secrets", "--stack", "prod"],
        # after `up`, the SDK reads outputs and the newest history entry for its UpResult
        ["stack", "output", "--json", "--stack", "prod"],
        ["stack", "output", "--json", "--show-secrets", "--stack", "prod"],
        ["stack", "history", "--json", "--page-size", "1", "--page", "1", "--stack", "prod"],
    ]


def test_rollback_applies_the_first_stage_file(fake: FakePulumi) -> None:
    fake.seed(
        outputs={"stage": "gradual", "weight": 50},
        history=[update(3, "rollout: promote canary -> gradual: ok", T0, T0 + timedelta(minutes=1))],
    )
    result = deployer(fake).apply("stable", "error rate 2.3% > 1% critical on 3 consecutive checks")
    argv = fake.runs_of("up")[0]["argv"]
    assert option(argv, "--config-file") == "Pulumi.stable.yaml"
    assert option(argv, "--message") == (
        "rollout: rollback gradual -> stable: error rate 2.3% > 1% critical on 3 consecutive checks"
    )
    assert (result.action, result.stage, result.weight) == ("rollback", "stable", 0)
    outputs = fake.state()["outputs"]
    assert (outputs["stage"], outputs["weight"]) == ("stable", 0)


def test_after_apply_current_reads_the_new_stage_back(fake: FakePulumi) -> None:
    seed_canary(fake)
    before = datetime.now(timezone.utc)
    deployer(fake).apply("gradual", "promote")
    state = PulumiDeployer(REPO, "prod", pulumi_root=fake.root, sleep=fake.sleep).current()  # a fresh bot process
    assert (state.stage, state.weight, state.update_version) == ("gradual", 50, 2)
    assert before - timedelta(seconds=1) <= state.since <= datetime.now(timezone.utc)


def test_restart_reads_stage_weight_and_start_from_outputs_and_history(fake: FakePulumi) -> None:
    """The bot keeps no state: a restarted bot finds when the running stage began in the history.
    A re-apply of the same stage does not restart the hold; a failed update changed nothing."""
    t_stable, t_canary, t_reapply, t_failed = (T0 + timedelta(hours=h) for h in (0, 1, 5, 9))
    fake.seed(
        outputs={"stage": "canary", "weight": 10},
        history=[  # newest first, as the CLI prints it
            update(4, "rollout: promote canary -> gradual: ok", t_failed, t_failed, result="failed"),
            update(3, "rollout: apply canary -> canary: re-sync", t_reapply, t_reapply + timedelta(seconds=30)),
            update(2, "rollout: promote stable -> canary: day 1", t_canary, t_canary + timedelta(seconds=45)),
            update(1, "rollout: apply -> stable: first deploy", t_stable, t_stable + timedelta(seconds=50)),
        ],
    )
    state = deployer(fake).current()
    assert (state.stage, state.weight) == ("canary", 10)
    assert state.since == t_canary + timedelta(seconds=45)
    assert state.update_version == 2
    assert fake.runs_of("up") == []


def test_a_manual_update_without_a_bot_message_is_read_from_its_config(fake: FakePulumi) -> None:
    """Someone ran `pulumi up --config-file Pulumi.majority.yaml` by hand: the update's config
    still tells which stage it applied."""
    fake.seed(
        outputs={"stage": "majority", "weight": 80},
        history=[
            update(2, "hotfix by hand", T0 + timedelta(hours=2), T0 + timedelta(hours=2, seconds=9),
                   config={"genesis-rollout:stage": {"name": "majority", "weight": 80}}),
            update(1, "rollout: promote canary -> gradual: ok", T0, T0 + timedelta(seconds=5)),
        ],
    )
    assert deployer(fake).current().since == T0 + timedelta(hours=2, seconds=9)


def test_a_stack_never_updated_gives_a_clear_error(fake: FakePulumi) -> None:
    fake.seed()
    with pytest.raises(DeployerError, match="no output.*stage.*weight.*--config-file Pulumi.<stage>.yaml"):
        deployer(fake).current()


@pytest.mark.parametrize("lock", ["service", "diy"])
def test_locked_stack_raises_and_is_never_applied_twice(fake: FakePulumi, lock: str) -> None:
    seed_canary(fake)
    fake.seed(
        outputs={"stage": "canary", "weight": 10},
        history=fake.state()["history"],
        lock=lock,
    )
    with pytest.raises(StackLockedError, match="locked by another update.*Nothing was applied") as err:
        deployer(fake).apply("gradual", "promote")
    assert type(err.value.__cause__).__name__ == "ConcurrentUpdateError"
    assert len(fake.runs_of("up")) == 1  # one attempt, no retry
    assert fake.state()["outputs"] == {"stage": "canary", "weight": 10}
    assert len(fake.state()["history"]) == 1


def test_failed_update_surfaces_the_cli_error_and_keeps_the_old_stage(fake: FakePulumi) -> None:
    fake.seed(
        outputs={"stage": "canary", "weight": 10},
        history=[update(1, "rollout: promote stable -> canary: day 1", T0, T0 + timedelta(seconds=40))],
        fail_next_up=True,
    )
    with pytest.raises(DeployerError, match="(?s)cannot apply stage 'gradual'.*resource genesis-canary failed"):
        deployer(fake).apply("gradual", "promote")
    assert len(fake.runs_of("up")) == 1
    state = deployer(fake).current()
    assert (state.stage, state.since) == ("canary", T0 + timedelta(seconds=40))


def test_preview_runs_a_diff_preview_with_the_stage_file(fake: FakePulumi) -> None:
    seed_canary(fake)
    plan = deployer(fake).preview("gradual")
    argv = fake.runs_of("preview")[0]["argv"]
    assert "--diff" in argv
    assert option(argv, "--config-file") == "Pulumi.gradual.yaml"
    # the SDK waits for the engine's summary event; CLIs > 3.205 stream it over gRPC
    assert option(argv, "--event-log").startswith("tcp://127.0.0.1:")
    assert '~ stage: "canary" => "gradual"' in plan
    assert "~ weight: 10 => 50" in plan
    assert fake.runs_of("up") == []


def test_an_unknown_stage_fails_on_the_stage_file_before_the_cli_runs(fake: FakePulumi) -> None:
    seed_canary(fake)
    with pytest.raises(ConfigError, match="(?s)Pulumi.turbo.yaml.*no stage file"):
        deployer(fake).apply("turbo", "oops")
    assert fake.calls() == []


def test_cli_missing_from_root_gives_install_hint(tmp_path: Path) -> None:
    with pytest.raises(DeployerError, match="Pulumi CLI not found .*install it from https://"):
        PulumiDeployer(REPO, pulumi_root=tmp_path).current()


def test_cli_missing_from_path_gives_install_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DeployerError, match="Pulumi CLI not found \\(`pulumi` on PATH\\)"):
        PulumiDeployer(REPO).apply("canary", "go")


def test_stand_in_on_path_is_used_without_a_root(fake: FakePulumi) -> None:
    seed_canary(fake)
    assert PulumiDeployer(REPO).current().stage == "canary"
    assert fake.commands()[0] == ["version"]


def test_missing_stack_is_named(fake: FakePulumi) -> None:
    seed_canary(fake)
    with pytest.raises(DeployerError, match="stack 'staging' does not exist.*pulumi stack init staging"):
        PulumiDeployer(REPO, "staging", pulumi_root=fake.root).current()


def test_update_message_round_trip() -> None:
    text = update_message("rollback", "majority", "stable", "p95 0.7s >\n 0.5s critical")
    assert text == "rollout: rollback majority -> stable: p95 0.7s > 0.5s critical"
    parsed = parse_update_message(text)
    assert parsed is not None
    assert (parsed.action, parsed.source, parsed.target, parsed.reason) == (
        "rollback", "majority", "stable", "p95 0.7s > 0.5s critical",
    )
    first = parse_update_message(update_message("apply", None, "stable", "first"))
    assert first is not None and (first.source, first.target) == (None, "stable")
    assert parse_update_message("Update from the console") is None


def test_a_composed_message_for_another_stage_is_refused(fake: FakePulumi) -> None:
    seed_canary(fake)
    with pytest.raises(ValueError, match="names stage 'full', not 'gradual'"):
        deployer(fake).apply("gradual", "rollout: promote majority -> full: wrong")
    assert fake.runs_of("up") == []


# --------------------------------------------------------------------------- phased stage changes

URN = "urn:pulumi:prod::genesis-rollout::genesis:rollout:WeightedService$"


def seed_at(fake: FakePulumi, stage: str, weight: int) -> None:
    """A stack last updated by this program: its outputs name the resources a phase targets."""
    fake.seed(
        outputs={"stage": "stable", "weight": 0},
        history=[update(1, "rollout: apply -> stable: baseline", T0, T0 + timedelta(seconds=30))],
    )
    deployer(fake).apply(stage, "seeded")
    fake.sleeps.clear()
    fake.log_file.unlink()


def targets(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == "--target"]


def test_a_promotion_scales_the_canary_up_with_a_targeted_update_then_shifts(fake: FakePulumi) -> None:
    seed_at(fake, "canary", 10)
    result = deployer(fake).apply("gradual", "hold over, 3 passes")
    ups = [run["argv"] for run in fake.runs_of("up")]
    assert [option(a, "--message") for a in ups] == [
        "rollout: promote canary -> gradual [1/2 scale-up]: hold over, 3 passes",
        "rollout: promote canary -> gradual [2/2 shift]: hold over, 3 passes",
    ]
    assert targets(ups[0]) == [
        URN + "kubernetes:apps/v1:Deployment::genesis-canary-deployment",
        URN + "genesis:rollout:FeatureFlagSet$kubernetes:core/v1:ConfigMap::genesis-canary-flags-configmap",
    ]
    assert targets(ups[1]) == []  # the last update converges the whole stack
    assert all(option(a, "--config-file") == "Pulumi.gradual.yaml" for a in ups)
    # the running canary pods read their new flags file before their share grows
    assert fake.sleeps == [75.0]  # routing.flagsPropagation
    assert result.phases == tuple(option(a, "--message") for a in ups) and result.message == result.phases[-1]


def test_a_rollback_moves_traffic_first_waits_then_scales_the_canary_down(fake: FakePulumi) -> None:
    seed_at(fake, "majority", 80)
    deployer(fake).apply("stable", "error rate 2% > 1%")
    ups = [run["argv"] for run in fake.runs_of("up")]
    assert [option(a, "--message") for a in ups] == [
        "rollout: rollback majority -> stable [1/2 shift]: error rate 2% > 1%",
        "rollout: rollback majority -> stable [2/2 scale-down]: error rate 2% > 1%",
    ]
    # traffic first and nothing else: the canary's flags change with its scale-down
    assert targets(ups[0]) == [URN + "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute::genesis-httproute"]
    assert targets(ups[1]) == []
    assert fake.sleeps == [30.0]  # routing.scaleDownDelay, between the shift and the scale-down


def test_a_stage_starts_when_its_last_phase_is_done(fake: FakePulumi) -> None:
    seed_at(fake, "canary", 10)
    deployer(fake).apply("gradual", "go")
    history = fake.state()["history"]
    state = deployer(fake).current()
    assert state.pending is None and state.stage == "gradual"
    assert state.update_version == history[0]["version"]  # the [2/2 shift] update, not [1/2]


def test_a_change_stopped_between_phases_is_reported_pending(fake: FakePulumi) -> None:
    """The process died after the shift, before the scale-down: the engine already recomputed the
    outputs to the target stage, the history says the change is half done."""
    fake.seed(
        outputs={"stage": "stable", "weight": 0},
        history=[
            update(6, "rollout: rollback majority -> stable [1/2 shift]: p95 0.8s", T0 + timedelta(hours=5)),
            update(5, "rollout: promote gradual -> majority: ok", T0, T0 + timedelta(minutes=1)),
        ],
    )
    state = deployer(fake).current()
    assert state.pending is not None
    assert (state.pending.action, state.pending.source, state.pending.target) == ("rollback", "majority", "stable")
    assert (state.pending.phase, state.pending.phases, state.pending.final) == (1, 2, False)
    assert state.update_version == 6


def test_finishing_a_pending_change_replays_every_phase_from_its_source(fake: FakePulumi) -> None:
    seed_at(fake, "majority", 80)
    deployer(fake).apply("stable", "resume: p95 0.8s", source="majority")
    ups = [run["argv"] for run in fake.runs_of("up")]
    assert [option(a, "--message") for a in ups] == [
        "rollout: rollback majority -> stable [1/2 shift]: resume: p95 0.8s",
        "rollout: rollback majority -> stable [2/2 scale-down]: resume: p95 0.8s",
    ]


def test_outputs_without_resource_urns_fall_back_to_one_ordered_update(fake: FakePulumi) -> None:
    """A stack last updated by an older program: its own dependencies still order the update."""
    fake.seed(
        outputs={"stage": "majority", "weight": 80},
        history=[update(3, "rollout: promote gradual -> majority: ok", T0, T0 + timedelta(minutes=1))],
    )
    deployer(fake).apply("stable", "roll back")
    ups = [run["argv"] for run in fake.runs_of("up")]
    assert len(ups) == 1 and targets(ups[0]) == [] and fake.sleeps == []
    assert option(ups[0], "--message") == "rollout: rollback majority -> stable: roll back"


def test_phase_markers_round_trip() -> None:
    text = update_message("promote", "canary", "gradual", "ok", "[1/2 scale-up]")
    parsed = parse_update_message(text)
    assert (parsed.target, parsed.phase, parsed.phases, parsed.final, parsed.reason) == ("gradual", 1, 2, False, "ok")
    assert parse_update_message(update_message("promote", "canary", "gradual", "ok")).final


def test_the_pulumi_token_file_is_read_for_the_cli_and_a_bad_one_is_named(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("pul-abc\n")
    assert cli_env_from_files({"PULUMI_ACCESS_TOKEN_FILE": str(token)}) == {"PULUMI_ACCESS_TOKEN": "pul-abc"}
    # a token in the environment passes through as it is; nothing set: nothing to add
    assert cli_env_from_files({"PULUMI_ACCESS_TOKEN": "x", "PULUMI_ACCESS_TOKEN_FILE": str(token)}) == {}
    assert cli_env_from_files({}) == {}
    with pytest.raises(DeployerError, match="PULUMI_ACCESS_TOKEN_FILE: cannot read .*missing"):
        cli_env_from_files({"PULUMI_ACCESS_TOKEN_FILE": str(tmp_path / "missing")})
    (tmp_path / "empty").write_text(" \n")
    with pytest.raises(DeployerError, match="PULUMI_ACCESS_TOKEN_FILE: .*empty is empty"):
        cli_env_from_files({"PULUMI_ACCESS_TOKEN_FILE": str(tmp_path / "empty")})
