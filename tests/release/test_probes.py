"""The probes of issue 10, one test each: the bot probed as an unlucky operator and as an attacker
would. (A property one module owns is tested beside it: strict stage files in tests/test_config.py,
the Prometheus client's partial-data/drip/size rules in tests/release/test_prometheus.py,
compare-and-apply and the failed-rollback page in tests/release/test_bot.py.) Prometheus is a hostile stand-in on 127.0.0.1 where a real one cannot be made to misbehave
(tests/support/hostile.py); the Pulumi CLI is the recording stand-in (it cannot be installed
here); Alertmanager is the real one where a page must arrive."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.fake_pulumi import REPO, FakePulumi, update
from support.hostile import HostilePrometheus, answering, raw
from support.stack import copy_project
from typer.testing import CliRunner

from rollout.cli import app
from rollout.config import load_release
from rollout.release.bot import ReleaseBot, check_release
from rollout.release.deployer import PulumiDeployer
from rollout.release.notify import AlertmanagerClient, ReleaseNotifier
from rollout.release.prometheus import Prometheus
from rollout.review.localstack import free_port, start_alertmanager

RELEASE = load_release(REPO)
CANARY = RELEASE.stage("canary")
def cli(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, list(args), env=env)


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakePulumi:
    return FakePulumi(tmp_path, monkeypatch)


def seed(fake: FakePulumi, stage: str, since: datetime, version: int = 1) -> None:
    fake.seed(
        outputs={"stage": stage, "weight": RELEASE.stage(stage).weight},
        history=[update(version, f"rollout: promote stable -> {stage}: test", since - timedelta(seconds=5), since)],
        tags={"rollout:notified": str(version)},
    )


# --------------------------------------------------------------------------- credentials


@pytest.mark.parametrize(
    ("variable", "value"),
    [("GRAFANA_TOKEN_FILE", "/nope"), ("GRAFANA_TOKEN_FILE", "EMPTY"), ("ALERTMANAGER_TOKEN_FILE", "/nope")],
)
def test_an_unreadable_notification_credential_never_stops_a_rollback(
    fake: FakePulumi, tmp_path: Path, variable: str, value: str
) -> None:
    """Was: `error: ... cannot read`, exit 3, no rollback. Now: rolled back, exit 4 (not told)."""
    seed(fake, "gradual", datetime.now(UTC) - timedelta(hours=1))
    if value == "EMPTY":
        value = str(tmp_path / "empty-token")
        Path(value).write_text("")
    with HostilePrometheus(answering()) as prometheus:
        result = cli("rollback", "--reason", "canary failing", "-C", str(REPO), "--pulumi-root", str(fake.root),
                     "--prometheus", prometheus.url, "--alertmanager", f"http://127.0.0.1:{free_port()}",
                     "--grafana", "http://127.0.0.1:9", "--report-dir", str(tmp_path / "reports"),
                     env={variable: value, "ROLLOUT_NOTIFY_ATTEMPTS": "1"})
    assert result.exit_code == 4, result.output
    assert fake.state()["outputs"]["stage"] == "stable"  # rolled back first
    assert "not notified" in result.output


# --------------------------------------------------------------------------- impossible data


@pytest.mark.parametrize(
    "canary",
    [
        {"test_pass_rate": "+Inf", "pipelex_workflows_success": "+Inf", "spice_tasks_generated": "+Inf",
         "genesis_requests:rate": "+Inf"},
        {"genesis_error_rate": "-Inf", "p95": "-Inf"},
        {"genesis_error_rate": "-5"},
        {"test_pass_rate": "7"},
    ],
    ids=["plus-inf-higher-is-better-and-count", "minus-inf", "negative-error-rate", "pass-rate-7"],
)
def test_impossible_values_never_pass(canary: dict[str, str]) -> None:
    """Was: pass, and the tick promoted."""
    with HostilePrometheus(answering(**canary)) as prometheus, Prometheus(prometheus.url) as prom:
        result = check_release(RELEASE, prom, CANARY)
    assert result.verdict == "hold", result.reason
    assert "impossible" in result.reason


@pytest.mark.parametrize(
    "body",
    [{"status": "success", "data": None}, [1, 2, 3],
     {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "abc"]}]}}],
    ids=["data-null", "a-list", "value-abc"],
)
def test_a_malformed_answer_is_an_error_never_a_traceback(body: object, tmp_path: Path) -> None:
    """Was: traceback, exit 1 (the 'fail' code). Now: exit 3 naming the query."""
    with HostilePrometheus(lambda query: raw(body)) as prometheus:
        result = cli("check", "--stage", "canary", "--prometheus", prometheus.url, "-C", str(REPO))
    assert result.exit_code == 3, result.output
    assert "malformed answer" in result.output and "namespace_app_track" in result.output
    assert "Traceback" not in result.output


# --------------------------------------------------------------------------- output hygiene


def test_data_is_never_console_markup(fake: FakePulumi, tmp_path: Path) -> None:
    """Was: Rich MarkupError after the rollback was applied, exit 1."""
    seed(fake, "gradual", datetime.now(UTC) - timedelta(hours=1))
    reason = "INC-42 [/] error spike [/b] in genesis-rollout:flags: [a-z0-9]"
    with HostilePrometheus(answering()) as prometheus:
        result = cli("rollback", "--reason", reason, "-C", str(REPO), "--pulumi-root", str(fake.root),
                     "--prometheus", prometheus.url, "--report-dir", str(tmp_path / "reports"))
    assert result.exit_code == 0, result.output
    assert reason in result.output  # shown literally: no emoji, nothing eaten


def test_markup_in_a_prometheus_error_body_is_printed_literally() -> None:
    body = {"status": "error", "errorType": "bad_data", "error": "parse error [/b] at genesis-rollout:flags: [a-z0-9]"}
    with HostilePrometheus(lambda query: raw(body, status=400)) as prometheus:
        result = cli("check", "--stage", "canary", "--prometheus", prometheus.url, "-C", str(REPO))
    assert result.exit_code == 3
    assert "parse error [/b] at genesis-rollout:flags: [a-z0-9]" in result.output


def test_credentials_in_the_prometheus_url_are_never_shown(fake: FakePulumi, tmp_path: Path) -> None:
    """Was: the password printed in the error and written into the incident report."""
    closed = f"http://admin:S3CRETPASSWORD@127.0.0.1:{free_port()}"
    check = cli("check", "--stage", "canary", "--prometheus", closed, "-C", str(REPO))
    assert check.exit_code == 3 and "S3CRETPASSWORD" not in check.output and "127.0.0.1" in check.output
    seed(fake, "gradual", datetime.now(UTC) - timedelta(hours=1))
    with HostilePrometheus(answering()) as prometheus:
        url = prometheus.url.replace("http://", "http://admin:S3CRETPASSWORD@")
        result = cli("rollback", "--reason", f"seen at {url}", "-C", str(REPO), "--pulumi-root", str(fake.root),
                     "--prometheus", url, "--report-dir", str(tmp_path / "reports"))
    assert result.exit_code == 0, result.output
    assert "S3CRETPASSWORD" not in result.output
    reports = list((tmp_path / "reports").glob("*.md"))
    assert reports and all("S3CRETPASSWORD" not in r.read_text() for r in reports)
    assert all("S3CRETPASSWORD" not in run["argv"][run["argv"].index("--message") + 1] for run in fake.runs_of("up"))


def test_render_refuses_to_replace_the_repository(tmp_path: Path) -> None:
    """Was: every file under alerts/ (runbooks, promtool tests) deleted."""
    project = copy_project(tmp_path)
    (project / "alerts" / "runbooks").mkdir(parents=True)
    (project / "alerts" / "runbooks" / "Keep.md").write_text("keep me")
    result = cli("render", "--stage", "canary", "--out", str(project), "-C", str(project))
    assert result.exit_code == 3 and "not written by `rollout render`" in result.output
    assert (project / "alerts" / "runbooks" / "Keep.md").read_text() == "keep me"


# --------------------------------------------------------------------------- roll back first, then tell


@pytest.fixture
def alertmanager() -> Iterator[str]:
    with start_alertmanager({"route": {"receiver": "null"}, "receivers": [{"name": "null"}]}) as running:
        yield running.url


def test_alertmanager_down_during_a_rollback_is_retried_and_says_applied_not_notified(fake: FakePulumi, tmp_path: Path) -> None:
    """Was: rollback applied, exit 0, the page never retried."""
    seed(fake, "gradual", datetime.now(UTC) - timedelta(hours=1))
    with HostilePrometheus(answering()) as prometheus:
        result = cli("rollback", "--reason", "p95 0.8s", "-C", str(REPO), "--pulumi-root", str(fake.root),
                     "--prometheus", prometheus.url, "--alertmanager", f"http://127.0.0.1:{free_port()}",
                     "--report-dir", str(tmp_path / "reports"), env={"ROLLOUT_NOTIFY_BACKOFF": "0"})
    assert result.exit_code == 4, result.output
    assert "(after 3 attempts)" in result.output
    assert fake.state()["outputs"]["stage"] == "stable"


def test_a_tick_after_a_crash_during_up_finishes_the_report_and_the_alerts_once(fake: FakePulumi, alertmanager: str, tmp_path: Path) -> None:
    """Was: the update finished, the report and annotation never written. The bot died right
    after `up`: the newest update is its rollback, rollout:notified still names the one before."""
    now = datetime.now(UTC)
    fake.seed(
        outputs={"stage": "stable", "weight": 0},
        history=[update(7, "rollout: rollback majority -> stable: p95 0.8s > 0.5s", now - timedelta(minutes=3), now - timedelta(minutes=2)),
                 update(6, "rollout: promote gradual -> majority: ok", now - timedelta(hours=5), now - timedelta(hours=5))],
        tags={"rollout:notified": "6"},
    )
    from rollout.release.hooks import StageReportWriter

    service = RELEASE.project.services[0]
    notifier = ReleaseNotifier(app="genesis", namespace="genesis", runbook_base_url="https://r.example",
                               alertmanager=AlertmanagerClient(alertmanager),
                               report_writer=StageReportWriter(tmp_path, RELEASE, service))
    bot = ReleaseBot(RELEASE, PulumiDeployer(REPO, "prod", pulumi_root=fake.root, sleep=fake.sleep),
                     Prometheus("http://127.0.0.1:9"), hooks=[notifier], clock=lambda: now)
    first = bot.tick()
    assert any("finishing the notifications of update 7" in e for e in first.effects)
    assert fake.state()["tags"]["rollout:notified"] == "7" and first.notified is True
    (report,) = tmp_path.glob("update-00007-rollback-majority-to-stable.md")
    assert "p95 0.8s > 0.5s" in report.read_text()
    assert len(AlertmanagerClient(alertmanager).alerts({"alertname": "GenesisRolloutRolledBack"})) == 1
    second = bot.tick()  # told once
    assert not any("finishing" in e for e in second.effects) and second.notified is None
    assert len(list(tmp_path.glob("*.md"))) == 1 and fake.runs_of("up") == []


