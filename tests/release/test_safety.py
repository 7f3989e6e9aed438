"""The probes of issue 20, one test each, through the `rollout` CLI as a user meets them:
interrupted changes, slow receivers, other people's edits. Prometheus and Alertmanager are
scripted stand-ins on 127.0.0.1 where a real one cannot be made to misbehave
(tests/support/hostile.py), the real Alertmanager where an alert must arrive; the Pulumi CLI is
the recording stand-in (tests/support/fake_pulumi: it cannot be installed here)."""

from __future__ import annotations

import base64
import json
import logging
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.fake_pulumi import REPO, FakePulumi, update
from support.hostile import HostilePrometheus, ScriptedReceiver, answering, trickle
from support.stack import copy_project, edit_project_config, edit_stage_file
from typer.testing import CliRunner

from rollout.cli import app
from rollout.config import load_release
from rollout.release.controls import PAUSED_TAG
from rollout.release.deployer import PulumiDeployer
from rollout.release.notify import AlertmanagerClient
from rollout.review.localstack import free_port, start_alertmanager

RELEASE = load_release(REPO)
PREFIX = "urn:pulumi:prod::genesis-rollout::genesis:rollout:WeightedService$"
SERVICES = {"genesis": {"resources": {
    "deployments": {t: f"{PREFIX}kubernetes:apps/v1:Deployment::genesis-{t}-deployment" for t in ("stable", "canary")},
    "routing": [f"{PREFIX}kubernetes:gateway.networking.k8s.io/v1:HTTPRoute::genesis-httproute"],
    "flags": {t: f"{PREFIX}genesis:rollout:FeatureFlagSet$kubernetes:core/v1:ConfigMap::genesis-{t}-flags-configmap"
              for t in ("stable", "canary")},
}}}
FAILING = {"genesis_error_rate": "0.5", "p95": "2", "test_pass_rate": "0.2"}  # the canary
QUIET = {"genesis_requests:rate": "0.001"}  # too few canary requests to judge: hold


def cli(*args: str, env: dict[str, str] | None = None):  # noqa: ANN201
    return CliRunner().invoke(app, list(args), env={"GRAFANA_URL": "", **(env or {})})


def bot_args(fake: FakePulumi, prometheus: str, reports: Path, project: Path = REPO) -> list[str]:
    return ["-C", str(project), "--pulumi-root", str(fake.root), "--prometheus", prometheus, "--report-dir", str(reports)]


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakePulumi:
    return FakePulumi(tmp_path, monkeypatch)


def seed(fake: FakePulumi, stage: str, since: datetime, version: int = 1, **extra) -> None:  # noqa: ANN003
    fake.seed(
        outputs={"stage": stage, "weight": RELEASE.stage(stage).weight, "services": SERVICES},
        history=[update(version, f"rollout: promote stable -> {stage}: test", since - timedelta(seconds=5), since)],
        tags={"rollout:notified": str(version)},
        **extra,
    )


def ups(fake: FakePulumi) -> list[tuple[str, str]]:
    """(config file, message) of every `pulumi up`, in order."""
    return [(c["argv"][c["argv"].index("--config-file") + 1], c["argv"][c["argv"].index("--message") + 1])
            for c in fake.runs_of("up")]


# --------------------------------------------------------------------------- 1. interrupted promotion


def seed_interrupted_promotion(fake: FakePulumi, now: datetime) -> None:
    """The newest update is `promote canary -> gradual [1/2 scale-up]` from 6 h ago."""
    fake.seed(
        outputs={"stage": "gradual", "weight": 25, "services": SERVICES},
        history=[
            update(2, "rollout: promote canary -> gradual [1/2 scale-up]: 3 passing checks",
                   now - timedelta(hours=6, seconds=30), now - timedelta(hours=6)),
            update(1, "rollout: promote stable -> canary: day 1", now - timedelta(hours=60), now - timedelta(hours=60)),
        ],
        tags={"rollout:notified": "1"},
    )


@pytest.mark.parametrize(
    ("canary", "action", "files"),
    [
        (FAILING, "rollback", ["Pulumi.stable.yaml", "Pulumi.stable.yaml"]),
        ({}, "promote", ["Pulumi.gradual.yaml", "Pulumi.gradual.yaml"]),
        (QUIET, "wait", []),
    ],
    ids=["fails-rolled-back", "passes-finished", "holds-waits"],
)
def test_an_interrupted_promotion_is_judged_again_before_its_remaining_phases(
    fake: FakePulumi, tmp_path: Path, canary: dict[str, str], action: str, files: list[str]
) -> None:
    """Was: `[2/2 shift]` applied after one query, a failing canary got its 25 %. Now: a fresh
    check of the source stage first; fail -> rolled back, pass -> finished, hold -> wait."""
    seed_interrupted_promotion(fake, datetime.now(UTC))
    with HostilePrometheus(answering(**canary)) as prometheus:
        result = cli("tick", "--json", *bot_args(fake, prometheus.url, tmp_path / "reports"))
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.stdout)
    assert outcome["decision"]["action"] == action
    assert len(outcome["checks"]) == 1  # the fresh check
    assert [f for f, _ in ups(fake)] == files
    if action == "rollback":
        assert "the interrupted promotion canary -> gradual was checked again and fails" in outcome["decision"]["reason"]
        assert all(m.startswith("rollout: rollback canary -> stable") for _, m in ups(fake))
        assert fake.state()["outputs"]["stage"] == "stable"
    if action == "promote":
        assert ups(fake)[-1][1].startswith("rollout: promote canary -> gradual [2/2 shift]")


def test_an_interrupted_promotion_stays_paused(fake: FakePulumi, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    seed_interrupted_promotion(fake, now)
    PulumiDeployer(REPO, "prod", pulumi_root=fake.root).set_tag(PAUSED_TAG, "by ops at now: INC-9")
    with HostilePrometheus(answering()) as prometheus:
        result = cli("tick", "--json", *bot_args(fake, prometheus.url, tmp_path / "reports"))
    assert result.exit_code == 0, result.output
    decision = json.loads(result.stdout)["decision"]
    assert decision["action"] == "wait" and "paused" in decision["reason"]
    assert ups(fake) == []


# --------------------------------------------------------------------------- 2. credentials in URLs


def test_credentials_in_the_alertmanager_and_grafana_urls_are_used_never_shown(
    fake: FakePulumi, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Was: `tick --json` printed `http://bot:PASSWORD@...` in effects and warnings, the log line
    on stderr too. The receivers here echo what they got (URL, Authorization) in an error body,
    as some proxies do: the credentials must still reach them, and appear nowhere."""
    def echo(method: str, path: str, headers: dict[str, str], body: bytes):  # noqa: ANN202
        if path.startswith("/api/annotations") and method == "GET":
            return 200, [b"[]"], 0.0
        if path.startswith("/api/annotations"):
            return 200, [b'{"id": 7}'], 0.0
        echoed = json.dumps({"error": f"rejected {path} with {headers.get('authorization')}"}).encode()
        return 500, [echoed], 0.0

    seed(fake, "gradual", datetime.now(UTC) - timedelta(hours=1))
    caplog.set_level(logging.DEBUG)
    with HostilePrometheus(answering(**FAILING)) as prometheus, ScriptedReceiver(echo) as receiver:
        am = receiver.url.replace("http://", "http://bot:AMPASSWORD@")
        grafana = receiver.url.replace("http://", "http://admin:GRPASSWORD@")
        result = cli("tick", "--json", *bot_args(fake, prometheus.url, tmp_path / "reports"),
                     "--alertmanager", am, "--grafana", grafana,
                     env={"ROLLOUT_NOTIFY_ATTEMPTS": "1"})
    assert result.exit_code == 4, result.output  # rolled back; Alertmanager refused
    outcome = json.loads(result.stdout)
    assert outcome["decision"]["action"] == "rollback" and fake.state()["outputs"]["stage"] == "stable"
    shown = result.output + "\n".join(r.getMessage() for r in caplog.records)
    shown += "".join(p.read_text(errors="replace") for p in (tmp_path / "reports").glob("*.md"))
    assert "PASSWORD" not in shown and base64.b64encode(b"bot:AMPASSWORD").decode() not in shown
    assert any("Alertmanager" in w and "Grafana annotation added" in w for w in outcome["warnings"])
    sent = {(m, p.split("?")[0]): h.get("authorization") for m, p, h, _ in receiver.requests}
    assert sent[("POST", "/api/v2/alerts")] == "Basic " + base64.b64encode(b"bot:AMPASSWORD").decode()
    assert sent[("POST", "/api/annotations")] == "Basic " + base64.b64encode(b"admin:GRPASSWORD").decode()


# --------------------------------------------------------------------------- 3. slow receivers


def test_a_trickling_alertmanager_waits_no_longer_than_the_deadline_and_the_report_comes_first(
    fake: FakePulumi, tmp_path: Path
) -> None:
    """Was: `rollout rollback` waited 75-150 s on an Alertmanager that accepted and then sent a
    byte every 5 s (the timeout is per read) and wrote the report only after the post returned.
    Now: the report exists when the post arrives; the post is given up on at its deadline."""
    reports = tmp_path / "reports"
    seen_at_post: list[list[str]] = []

    def slow(method: str, path: str, headers: dict[str, str], body: bytes):  # noqa: ANN202
        seen_at_post.append(sorted(p.name for p in reports.glob("*.md")))
        return trickle(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}", 0.5)

    seed(fake, "majority", datetime.now(UTC) - timedelta(hours=1))
    with HostilePrometheus(answering()) as prometheus, ScriptedReceiver(slow) as receiver:
        result = cli("rollback", "--reason", "INC-20", *bot_args(fake, prometheus.url, reports),
                     "--alertmanager", receiver.url,
                     env={"ROLLOUT_NOTIFY_ATTEMPTS": "1", "ROLLOUT_NOTIFY_TIMEOUT": "2"})
    assert result.exit_code == 4, result.output
    assert "gave no complete answer within 2s" in result.output
    assert fake.state()["outputs"]["stage"] == "stable"
    assert seen_at_post and all(names == ["update-00003-rollback-majority-to-stable.md"] for names in seen_at_post)
    [report] = reports.glob("*.md")
    assert stat.S_IMODE(report.stat().st_mode) == 0o640
    assert "NOT sent" in report.read_text()  # rewritten afterwards with what happened


def test_a_symlink_planted_at_a_report_path_is_replaced_never_followed(fake: FakePulumi, tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    reports.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (reports / "update-00003-rollback-majority-to-stable.md").symlink_to(victim)
    seed(fake, "majority", datetime.now(UTC) - timedelta(hours=1))
    with HostilePrometheus(answering()) as prometheus:
        result = cli("rollback", *bot_args(fake, prometheus.url, reports))
    assert result.exit_code == 0, result.output
    assert victim.read_text() == "keep me"
    report = reports / "update-00003-rollback-majority-to-stable.md"
    assert not report.is_symlink() and "Incident report" in report.read_text()
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o640 for p in reports.iterdir())


# --------------------------------------------------------------------------- 5. a second rollback


def test_a_rollback_at_the_rollback_target_pages_nobody_unless_forced(fake: FakePulumi, tmp_path: Path) -> None:
    """Was: `stable -> stable` applied, a critical page "from stable to stable", a report."""
    now = datetime.now(UTC)
    fake.seed(outputs={"stage": "stable", "weight": 0, "services": SERVICES},
              history=[update(3, "rollout: rollback canary -> stable: error rate", now - timedelta(minutes=9), now - timedelta(minutes=8))],
              tags={"rollout:notified": "3"})
    closed = f"http://127.0.0.1:{free_port()}"  # any attempt to page would fail: exit 4
    with HostilePrometheus(answering()) as prometheus:
        args = bot_args(fake, prometheus.url, tmp_path / "reports")
        again = cli("rollback", "--reason", "to be sure", *args, "--alertmanager", closed)
        assert again.exit_code == 0, again.output
        assert "already at the rollback target 'stable': nothing applied, nobody paged" in again.output
        assert ups(fake) == [] and not (tmp_path / "reports").exists()
        forced = cli("rollback", "--force", "--reason", "re-apply", *args,
                     env={"ROLLOUT_NOTIFY_ATTEMPTS": "1"})
    assert forced.exit_code == 0, forced.output
    assert ups(fake) == [("Pulumi.stable.yaml", "rollout: rollback stable -> stable: re-apply")]


# --------------------------------------------------------------------------- 6. pause during a tick


def test_a_pause_given_while_a_tick_measures_wins(fake: FakePulumi, tmp_path: Path) -> None:
    """Was: `rollout pause` exited 0 ("the bot will not promote") and the tick then promoted:
    tags were read once. The pause lands while Prometheus answers the tick's first query."""
    seed(fake, "canary", datetime.now(UTC) - timedelta(hours=49))
    paused: list[bool] = []
    healthy = answering()

    def pause_on_first_query(query: str):  # noqa: ANN202
        if not paused:
            paused.append(True)
            PulumiDeployer(REPO, "prod", pulumi_root=fake.root).set_tag(PAUSED_TAG, "by ops at 12:00: INC-6 look first")
        return healthy(query)

    with HostilePrometheus(pause_on_first_query) as prometheus:
        result = cli("tick", "--json", *bot_args(fake, prometheus.url, tmp_path / "reports"))
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.stdout)
    assert [c["verdict"] for c in outcome["checks"]] == ["pass"] * 3  # it would have promoted
    assert outcome["decision"]["action"] == "wait" and "paused" in outcome["decision"]["reason"]
    assert ups(fake) == []


# --------------------------------------------------------------------------- 8. a late rollback


@pytest.fixture
def alertmanager() -> Iterator[str]:
    with start_alertmanager({"route": {"receiver": "null"}, "receivers": [{"name": "null"}]}) as running:
        yield running.url


def test_an_untold_rollback_is_told_however_late_and_marked_late(fake: FakePulumi, alertmanager: str, tmp_path: Path) -> None:
    """Was: the bot died right after applying a rollback, the next tick 3 h later dropped it (the
    one-hour cutoff): no page, no report. Now told, marked late, and the page is active."""
    now = datetime.now(UTC)
    fake.seed(
        outputs={"stage": "stable", "weight": 0, "services": SERVICES},
        history=[update(7, "rollout: rollback majority -> stable: p95 0.8s > 0.5s", now - timedelta(hours=3, minutes=1), now - timedelta(hours=3)),
                 update(6, "rollout: promote gradual -> majority: ok", now - timedelta(hours=9), now - timedelta(hours=9))],
        tags={"rollout:notified": "6"},
    )
    with HostilePrometheus(answering()) as prometheus:
        result = cli("tick", "--json", *bot_args(fake, prometheus.url, tmp_path / "reports"), "--alertmanager", alertmanager)
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.stdout)
    assert any("finishing the notifications of update 7 (LATE" in e for e in outcome["effects"])
    (page,) = AlertmanagerClient(alertmanager).alerts({"alertname": "GenesisRolloutRolledBack"})  # active: it pages
    assert page["annotations"]["summary"].startswith("[late]") and "LATE" in page["annotations"]["late"]
    (report,) = (tmp_path / "reports").glob("update-00007-rollback-majority-to-stable.md")
    assert "told LATE" in report.read_text()
    assert fake.state()["tags"]["rollout:notified"] == "7"


# --------------------------------------------------------------------------- 9. smaller ones


def test_a_failing_notified_tag_write_after_a_told_rollback_is_a_warning_not_an_error(fake: FakePulumi, tmp_path: Path) -> None:
    """Was: exit 3 ("nothing applied") though the rollback was applied and told."""
    seed(fake, "majority", datetime.now(UTC) - timedelta(hours=1), fail_tag_set=True)
    with HostilePrometheus(answering()) as prometheus:
        result = cli("rollback", "--reason", "INC-21", *bot_args(fake, prometheus.url, tmp_path / "reports"))
    assert result.exit_code == 0, result.output
    assert "could not note it on the stack (rollout:notified)" in result.output
    assert fake.state()["outputs"]["stage"] == "stable"


def test_a_reason_that_looks_like_a_stack_message_is_just_a_reason(fake: FakePulumi, tmp_path: Path) -> None:
    """Was: refused ("names stage 'gradual', not 'stable'"), nothing rolled back."""
    seed(fake, "majority", datetime.now(UTC) - timedelta(hours=1))
    reason = "rollout: promote canary -> gradual: was wrong"
    with HostilePrometheus(answering()) as prometheus:
        result = cli("rollback", "--reason", reason, *bot_args(fake, prometheus.url, tmp_path / "reports"))
    assert result.exit_code == 0, result.output
    assert fake.state()["outputs"]["stage"] == "stable"
    assert all(m.startswith("rollout: rollback majority -> stable") and m.endswith(reason) for _, m in ups(fake))


# --------------------------------------------------------------------------- 4. someone's half-edited stage file


@pytest.fixture
def half_edited(tmp_path: Path) -> Path:
    """The project with `Pulumi.full.yaml` holding `weight: 1000` (someone's edit in progress)."""
    project = copy_project(tmp_path)
    edit_stage_file(project, "full", "stage", {"name": "full", "weight": 1000})
    return project


def test_a_broken_unrelated_stage_file_never_blocks_a_rollback(fake: FakePulumi, half_edited: Path, tmp_path: Path) -> None:
    """Was: ConfigError, exit 3, nothing applied, no page, no report. Now: rolled back from
    majority (it needs only Pulumi.stable.yaml), the broken file reported as a warning."""
    seed(fake, "majority", datetime.now(UTC) - timedelta(hours=1))
    with HostilePrometheus(answering(**FAILING)) as prometheus:
        result = cli("tick", "--json", *bot_args(fake, prometheus.url, tmp_path / "reports", half_edited))
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.stdout)
    assert outcome["decision"]["action"] == "rollback" and fake.state()["outputs"]["stage"] == "stable"
    assert [f for f, _ in ups(fake)] == ["Pulumi.stable.yaml", "Pulumi.stable.yaml"]  # still in phases
    assert any("Pulumi.full.yaml" in w and "weight" in w for w in outcome["warnings"])
    assert list((tmp_path / "reports").glob("*rollback-majority-to-stable.md"))


def test_a_manual_rollback_needs_only_the_rollback_targets_file(fake: FakePulumi, half_edited: Path, tmp_path: Path) -> None:
    seed(fake, "majority", datetime.now(UTC) - timedelta(hours=1))
    with HostilePrometheus(answering()) as prometheus:
        result = cli("rollback", "--reason", "INC-4", *bot_args(fake, prometheus.url, tmp_path / "reports", half_edited))
    assert result.exit_code == 0, result.output
    assert fake.state()["outputs"]["stage"] == "stable"


def test_a_broken_next_stage_file_holds_the_promotion_and_says_why(fake: FakePulumi, half_edited: Path, tmp_path: Path) -> None:
    seed(fake, "majority", datetime.now(UTC) - timedelta(days=30))
    with HostilePrometheus(answering()) as prometheus:
        result = cli("tick", "--json", *bot_args(fake, prometheus.url, tmp_path / "reports", half_edited))
    assert result.exit_code == 0, result.output
    decision = json.loads(result.stdout)["decision"]
    assert decision["action"] == "wait" and "the next stage's file is broken: Pulumi.full.yaml" in decision["reason"]
    assert ups(fake) == []


def test_watch_keeps_running_through_a_tick_that_cannot_act(fake: FakePulumi, tmp_path: Path) -> None:
    """A tick that fails (here: the stack is locked) is printed and the next tick comes; only
    --max-ticks ends the loop, with the last tick's exit code."""
    seed(fake, "majority", datetime.now(UTC) - timedelta(hours=1), lock="service")
    project = copy_project(tmp_path)
    edit_stage_file(project, "majority", "analysis", {"checkInterval": "1s"})
    with HostilePrometheus(answering(**FAILING)) as prometheus:
        result = cli("watch", "--max-ticks", "2", *bot_args(fake, prometheus.url, tmp_path / "reports", project))
    assert result.exit_code == 3, result.output
    assert result.output.count("locked by another update") == 2  # two ticks, not one


# --------------------------------------------------------------------------- 7. a changed canary


def seed_hand_update(fake: FakePulumi, now: datetime, image: str, tags: dict[str, str]) -> dict:
    """At canary since 50 h (the bot's promotion); 15 min ago someone ran `pulumi up` by hand."""
    services = {"genesis": {**SERVICES["genesis"], "canaryImage": image}}
    stage = {"genesis-rollout:stage": {"name": "canary", "weight": 10}}
    fake.seed(
        outputs={"stage": "canary", "weight": 10, "services": services},
        history=[update(2, "Update canary image", now - timedelta(minutes=16), now - timedelta(minutes=15), config=stage),
                 update(1, "rollout: promote stable -> canary: day 1", now - timedelta(hours=50), now - timedelta(hours=50))],
        tags={"rollout:notified": "1", **tags},
    )
    return services


@pytest.mark.parametrize("noted", [True, False], ids=["noted-before", "never-noted"])
def test_a_new_canary_image_mid_stage_restarts_the_hold_and_the_evidence(fake: FakePulumi, tmp_path: Path, noted: bool) -> None:
    """Was: promoted after three 5-min passes on the 50 h old stage start. Now: the hold runs
    from the hand update that changed the canary (its checks too), and the bot notes it."""
    from rollout.release.deployer import canary_identity

    now = datetime.now(UTC)
    old = canary_identity({"genesis": {**SERVICES["genesis"], "canaryImage": "ghcr.io/genesis/genesis:1.42.0"}})
    services = seed_hand_update(fake, now, "ghcr.io/genesis/genesis:1.42.1", {"rollout:canary": f"1 {old}"} if noted else {})
    with HostilePrometheus(answering()) as prometheus:
        result = cli("tick", "--json", *bot_args(fake, prometheus.url, tmp_path / "reports"))
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.stdout)
    assert outcome["decision"]["action"] == "wait", outcome["decision"]
    assert datetime.fromisoformat(outcome["since"]) > now - timedelta(minutes=16)
    assert any("the canary changed in update 2" in e for e in outcome["effects"])
    assert ups(fake) == []
    assert fake.state()["tags"]["rollout:canary"] == f"2 {canary_identity(services)}"


def test_a_hand_update_that_leaves_the_canary_alone_keeps_the_hold(fake: FakePulumi, tmp_path: Path) -> None:
    from rollout.release.deployer import canary_identity

    now = datetime.now(UTC)
    same = {"genesis": {**SERVICES["genesis"], "canaryImage": "ghcr.io/genesis/genesis:1.42.0"}}
    seed_hand_update(fake, now, "ghcr.io/genesis/genesis:1.42.0", {"rollout:canary": f"1 {canary_identity(same)}"})
    with HostilePrometheus(answering()) as prometheus:
        result = cli("tick", "--json", *bot_args(fake, prometheus.url, tmp_path / "reports"))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["decision"]["action"] == "promote"


# --------------------------------------------------------------------------- also: phases as they happen


def test_a_rollback_prints_each_phase_with_its_time_and_the_report_records_them(fake: FakePulumi, tmp_path: Path) -> None:
    """The page says when traffic actually moved: every phase is printed as it happens (on
    stderr, with a UTC time) and lands in the incident report's timeline."""
    import re

    project = copy_project(tmp_path)
    edit_project_config(project, "routing", scaleDownDelay="1s")
    seed(fake, "majority", datetime.now(UTC) - timedelta(hours=1))
    with HostilePrometheus(answering(**FAILING)) as prometheus:
        result = cli("rollback", "--reason", "INC-30", *bot_args(fake, prometheus.url, tmp_path / "reports", project))
    assert result.exit_code == 0, result.output
    step = "rollback majority -> stable phase"
    for line in (f"{step} 1/2 shift started", f"{step} 1/2 shift done", f"{step} 2/2 scale-down in 1 s",
                 f"{step} 2/2 scale-down started", f"{step} 2/2 scale-down done"):
        assert re.search(rf"\d\d:\d\d:\d\dZ {re.escape(line)}", result.output), line
    [report] = (tmp_path / "reports").glob("*rollback-majority-to-stable.md")
    text = report.read_text()
    assert f"{step} 1/2 shift done (stack update 2)" in text and f"{step} 2/2 scale-down done" in text
    # a person's rollback: the report shows the gate values that made them roll back, and when
    # traffic moved (the shift's end); its plot has a panel per failing gate against stable
    assert "| error_rate |" in text and "No check ran" not in text
    moved = re.search(r"- \*\*Traffic moved:\*\* (\S+ \S+) UTC", text)
    assert moved and f"| {moved[1]} UTC | {step} 1/2 shift done" in text
    from rollout.release.report import failing_gates, report_for_change  # noqa: F401 - the plot's panels

    png = report.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
