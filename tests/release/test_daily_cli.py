"""`rollout report --daily` through the CLI after a day with a rollback: a REAL Prometheus fed by
synthetic Genesis pods (whose canary turns bad in `gradual`), a REAL Alertmanager holding the
bot's rollback page, the aiosmtpd SMTP sink as the team's mailbox, and the real Automation API
reading the stack's history from the recording Pulumi CLI stand-in (rollout/local/pulumi_standin:
the Pulumi CLI cannot be installed here).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from support.fake_pulumi import FakePulumi, update
from support.live import LiveStack, compressed_config, live_stack
from support.smtp import SmtpSink
from support.stack import copy_project, edit_stage_file
from typer.testing import CliRunner

from rollout.cli import app
from rollout.config import load_release
from rollout.release.bot import check_release
from rollout.release.deployer import update_message
from rollout.release.notify import AlertmanagerClient, rollback_alert
from rollout.review.localstack import WebhookReceiver, start_alertmanager, wait_for

APP = "genesis"
ANALYSIS = {"checkInterval": "1s", "window": "10s", "consecutiveFailures": 3, "passingChecksToPromote": 3,
            "minCanaryRequests": 20, "hold": "30s", "progressDeadline": "5s"}
SMTP_USER, SMTP_PASSWORD = "alertmanager@genesis.com", "daily-cli-password"


@dataclass
class Day:
    """What happened: promoted to canary, to gradual, the canary turned bad, rolled back."""

    live: LiveStack
    alertmanager: str
    mailbox: SmtpSink
    project: Path
    canary_at: datetime
    gradual_at: datetime
    rollback_at: datetime


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Day]:
    project = copy_project(tmp_path_factory.mktemp("daily"))
    for stage in ("stable", "canary", "gradual", "majority", "full"):
        edit_stage_file(project, stage, "analysis", ANALYSIS)
    with ExitStack() as stack:
        mailbox = stack.enter_context(SmtpSink(SMTP_USER, SMTP_PASSWORD))
        path = project / "Pulumi.yaml"
        data = yaml.safe_load(path.read_text())
        email = data["config"]["genesis-rollout:monitoring"]["value"]["alerting"]["email"]
        email.update(smarthost=mailbox.smarthost, requireTls=False)
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        receiver = stack.enter_context(WebhookReceiver())
        am = stack.enter_context(start_alertmanager({
            "route": {"receiver": "hook", "group_by": ["alertname"], "group_wait": "1s", "group_interval": "1s",
                      "repeat_interval": "1h"},
            "receivers": [{"name": "hook", "webhook_configs": [{"url": receiver.url}]}],
        }))
        live = stack.enter_context(live_stack(compressed_config([APP]), {APP: "healthy"}))
        live.wait_for_full_window()
        release = load_release(project)
        canary_at = now() - timedelta(seconds=10)  # its first check (one 10 s window in) is now
        wait_for(lambda: now() >= canary_at + timedelta(seconds=16), 30, "six canary checks")
        gradual_at = now()
        live.workloads[(APP, "canary")].set_profile("bad")
        gradual = release.stage("gradual")

        def three_fails() -> bool:  # inside gradual's grid: its first check is a window after it started
            at = now()
            return at - timedelta(seconds=2) >= gradual_at + timedelta(seconds=10) and all(
                check_release(release, live.prom, gradual, at - timedelta(seconds=back)).verdict == "fail"
                for back in (0, 1, 2))

        wait_for(three_fails, 60, "three failing checks in gradual", interval=0.5)
        rollback_at = now()
        AlertmanagerClient(am.url).post_alerts([rollback_alert(
            app=APP, namespace="genesis", source_stage="gradual", target_stage="stable",
            reason="the last 3 checks failed (limit 3)", at=rollback_at, runbook_url="https://example.test/rb.md")])
        live.workloads[(APP, "canary")].set_profile("healthy")
        yield Day(live, am.url, mailbox, project, canary_at, gradual_at, rollback_at)


@pytest.fixture
def fake(day: Day, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakePulumi:
    """The stack as the bot left it: at stable since the rollback, its history the three changes."""
    fake = FakePulumi(tmp_path, monkeypatch)
    second = timedelta(seconds=1)
    fake.seed(outputs={"stage": "stable", "weight": 0}, tags={"rollout:notified": "3"}, history=[
        update(3, update_message("rollback", "gradual", "stable", "the last 3 checks failed (limit 3)"),
               day.rollback_at - second, day.rollback_at),
        update(2, update_message("promote", "canary", "gradual", "hold over, 3 passing checks"),
               day.gradual_at - second, day.gradual_at),
        update(1, update_message("promote", "stable", "canary", "day 1"), day.canary_at - second, day.canary_at),
    ])
    return fake


def daily(day: Day, fake: FakePulumi, out: Path, *args: str, env: dict[str, str] | None = None):  # noqa: ANN201
    argv = ["report", "--daily", "-C", str(day.project), "--pulumi-root", str(fake.root),
            "--prometheus", day.live.prometheus.url, "--alertmanager", day.alertmanager, "--report-dir", str(out), "--window", "2m", *args]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = CliRunner().invoke(app, argv, env={"SMTP_PASSWORD": "", "SLACK_WEBHOOK_URL": "", **(env or {})})
    # matplotlib's own warnings name the caller's file (warn_external): keep all but deprecations
    return result, [f"{w.filename}: {w.message}" for w in caught if not issubclass(w.category, DeprecationWarning)]


def test_a_dry_run_writes_the_day_with_its_rollback_and_sends_nothing(day: Day, fake: FakePulumi, tmp_path: Path) -> None:
    result, mpl_warnings = daily(day, fake, tmp_path / "reports", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "dry run: not e-mailed to team@genesis.com" in result.stdout
    assert day.mailbox.messages == []
    assert mpl_warnings == []  # e.g. "No artists with labels found to put in legend" at stable
    (markdown,) = (tmp_path / "reports").glob("daily-*.md")
    text = markdown.read_text()
    assert "- **Health:** rolled back" in text and text.splitlines()[0].endswith(": stable (0%), rolled back, next: none")
    counts = next(line for line in text.splitlines() if line.startswith("- **Checks in the last 2m:**"))
    passed, held, failed = (int(counts.split(" " + word)[0].split()[-1]) for word in ("passed", "held", "failed"))
    assert passed >= 5 and failed >= 3, counts  # the checks before the rollback count
    assert "(canary: " in counts and "; gradual: " in counts and "failed)" in counts
    next_action = next(line for line in text.splitlines() if line.startswith("- **Next action:**"))
    assert "earliest promotion" not in next_action and "stage 'stable' sends the canary no traffic" in next_action
    alerts = text.split("## Alerts that fired")[1].split("##")[0]
    assert alerts.count("GenesisRolloutRolledBack (critical)") == 1, alerts
    assert "rollback gradual -> stable: the last 3 checks failed (limit 3)" in text


def test_the_plot_shows_both_tracks_and_the_weight(day: Day, fake: FakePulumi, tmp_path: Path) -> None:
    """Not empty axes: the canary (orange) and stable (green) lines from the recording rules, and
    the weight step (blue) up to gradual's 50 % and back to 0."""
    import matplotlib.image

    result, _ = daily(day, fake, tmp_path, "--dry-run")
    assert result.exit_code == 0, result.output
    (png,) = tmp_path.glob("daily-*.png")
    pixels = matplotlib.image.imread(png)[:, :, :3]

    def count(rgb: tuple[float, float, float]) -> int:
        return int((abs(pixels - rgb).max(axis=2) < 0.08).sum())

    counts = {c: count(c) for c in ((1.0, 0.498, 0.055), (0.173, 0.627, 0.173), (0.122, 0.467, 0.706))}
    assert counts[(1.0, 0.498, 0.055)] > 300, counts  # tab:orange, the canary
    assert counts[(0.173, 0.627, 0.173)] > 100, counts  # tab:green, stable (partly under the canary)
    assert counts[(0.122, 0.467, 0.706)] > 100, counts  # tab:blue, the weight


def test_without_dry_run_it_mails_the_report_with_its_plot(day: Day, fake: FakePulumi, tmp_path: Path) -> None:
    result, _ = daily(day, fake, tmp_path, env={"SMTP_PASSWORD": SMTP_PASSWORD})
    assert result.exit_code == 0, result.output
    assert "e-mailed to team@genesis.com" in result.stdout
    mail = day.mailbox.wait_for(lambda m: "daily status" in m["Subject"])
    assert "stable (0%), rolled back" in mail["Subject"]
    (attachment,) = list(mail.iter_attachments())
    assert attachment.get_content().startswith(b"\x89PNG")
    assert "GenesisRolloutRolledBack" in mail.get_body(("plain",)).get_content()


def test_no_check_is_never_healthy() -> None:
    """A stage with traffic whose window held no check (a fresh stage, a silent bot) says so."""
    from rollout.analysis.decision import Decision
    from rollout.release.daily import DailyStatus

    at = now()
    status = DailyStatus(app=APP, at=at, window=timedelta(hours=24), stage="canary", weight=10, since=at,
                         changes=[], checks=[], gates=[], alerts=[],
                         decision=Decision("wait", "no check yet", "canary", timedelta(hours=48)))
    assert status.health == "not checked" and ", not checked, next: wait" in status.subject
