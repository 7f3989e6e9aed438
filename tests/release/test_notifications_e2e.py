"""Who hears what, end to end with the real integrations: a REAL Alertmanager 0.25 with the
rendered routing tree and receivers (Slack, PagerDuty and e-mail, no webhook override) delivers
the bot's own notifications to local stand-ins of the outside services: an HTTP server for the
Slack and PagerDuty APIs (their URLs come from the mounted secret files and config, as in the
cluster) and a real SMTP server (aiosmtpd) for the team's mailbox. The daily status goes by
SMTP and Slack from the bot itself, composed from a real Prometheus fed by synthetic pods."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import pytest
from support.fake_pulumi import REPO
from support.live import compressed_config, live_stack
from support.smtp import SmtpSink

from rollout.analysis.gates import GateMeasurement, Measurements, evaluate
from rollout.config import load_release, load_stack_config
from rollout.model import MonitoringConfig
from rollout.monitoring.alertmanager_config import render_alertmanager_yaml, secret_path
from rollout.release import daily
from rollout.release.bot import ReleaseBot
from rollout.release.deployer import DeployedState
from rollout.release.notify import AlertmanagerClient, ReleaseNotifier
from rollout.review.localstack import WebhookReceiver, start_alertmanager, wait_for

SMTP_USER, SMTP_PASSWORD = "alertmanager@genesis.com", "smtp-e2e-password"
ROUTING_KEY = "pagerduty-e2e-routing-key"


@pytest.fixture(scope="module")
def outside() -> Iterator[SimpleNamespace]:
    with WebhookReceiver() as slack, WebhookReceiver() as pagerduty, SmtpSink(SMTP_USER, SMTP_PASSWORD) as mailbox:
        yield SimpleNamespace(slack=slack, pagerduty=pagerduty, mailbox=mailbox)


def monitoring_for(outside: SimpleNamespace) -> MonitoringConfig:
    """The repo's alerting config, pointed at the local stand-ins, with second-scale grouping."""
    monitoring = load_stack_config(REPO, "canary").project.monitoring
    alerting = monitoring.alerting
    return monitoring.model_copy(update={"alerting": alerting.model_copy(update={
        "email": alerting.email.model_copy(update={"smarthost": outside.mailbox.smarthost, "require_tls": False}),
        "pagerduty": alerting.pagerduty.model_copy(update={"url": outside.pagerduty.url}),
        "group_wait": timedelta(seconds=1), "group_interval": timedelta(seconds=1),
    })})


@pytest.fixture(scope="module")
def alertmanager(outside: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    monitoring = monitoring_for(outside)
    secrets = tmp_path_factory.mktemp("secrets")
    alerting = monitoring.alerting
    for ref, value in (
        (alerting.slack.deployments.webhook, outside.slack.url + "deployments"),
        (alerting.slack.incidents.webhook, outside.slack.url + "incidents"),
        (alerting.pagerduty.routing_key, ROUTING_KEY),
        (alerting.email.password, SMTP_PASSWORD),
    ):
        path = Path(secret_path(ref, str(secrets)))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value)
    with start_alertmanager(render_alertmanager_yaml(monitoring, secrets_dir=str(secrets))) as running:
        yield running.url


def notifier(url: str) -> ReleaseNotifier:
    release = load_release(REPO)
    return ReleaseNotifier(
        app="genesis", namespace="genesis", runbook_base_url=release.project.monitoring.runbook_base_url,
        alertmanager=AlertmanagerClient(url), weights={s.name: s.weight for s in release.stages},
        dashboard_base_url="https://grafana.genesis.example",
    )


def change(action: str, source: str, target: str, reason: str) -> SimpleNamespace:
    stage = load_release(REPO).stage(source)
    values = {"error_rate": 0.0004, "p95_latency_seconds": 0.12, "test_pass_rate": 0.995,
              "pipelex_success_rate": 0.97, "spice_tasks_per_minute": 4.0, "fallback_rate": 0.01}
    measured = Measurements(
        gates={k: GateMeasurement(canary=v, stable=v, query=k) for k, v in values.items()}, canary_requests=900,
        availability=GateMeasurement(canary=1.0, stable=1.0, query="available"), at=datetime.now(UTC).isoformat(),
    )
    now = datetime.now(UTC)
    return SimpleNamespace(action=action, source=source, target=target, reason=reason,
                           started_at=now - timedelta(hours=48), at=now, checks=[evaluate(stage, measured)], applied=None)


def slack_messages(outside: SimpleNamespace, channel: str, alertname: str) -> list[dict]:
    return [p for p in outside.slack.payloads
            if p.get("channel") == channel and alertname in p["attachments"][0]["title"]]


def test_a_promotion_reaches_deployments_and_the_mailbox_and_nobody_is_paged(outside, alertmanager) -> None:
    notifier(alertmanager).stage_changed(change("promote", "canary", "gradual", "hold over, 3 checks passed"))

    (slack,) = wait_for(lambda: slack_messages(outside, "#deployments", "GenesisStageChanged") or None, 30,
                        "the promotion in #deployments")
    text = slack["attachments"][0]["text"]
    assert "genesis: promote canary (10%) -> gradual (50%)" in text
    assert "Canary weight: 10% -> 50%" in text and "error_rate 0.04 % (target 0.1 %" in text
    assert "Dashboard: https://grafana.genesis.example/d/genesis-release/genesis-release?" in text and "var-stage=gradual" in text
    assert 'Roll back: `rollout rollback --reason' in text
    mail = outside.mailbox.wait_for(lambda m: "GenesisStageChanged" in m["Subject"])
    assert mail["To"] == "team@genesis.com" and outside.mailbox.logins == [SMTP_USER]
    body = mail.get_body(("html", "plain")).get_content()
    assert "promote canary (10%) -&gt; gradual (50%)" in body or "promote canary (10%) -> gradual (50%)" in body
    assert not slack_messages(outside, "#incidents", "GenesisStageChanged") and outside.pagerduty.payloads == []


def test_a_rollback_pages_and_reaches_incidents_and_is_told_as_a_stage_change(outside, alertmanager) -> None:
    notifier(alertmanager).stage_changed(change("rollback", "majority", "stable", "p95 0.7s > 0.5s on 3 checks"))

    page = wait_for(lambda: next((p for p in outside.pagerduty.payloads if p.get("event_action") == "trigger"), None),
                    30, "the PagerDuty event")
    assert page["routing_key"] == ROUTING_KEY  # read from the mounted secret file
    assert "GenesisRolloutRolledBack" in page["payload"]["summary"]
    (incident,) = wait_for(lambda: slack_messages(outside, "#incidents", "GenesisRolloutRolledBack") or None, 30,
                           "the rollback in #incidents")
    assert "rolled genesis back from stage majority to stable" in incident["attachments"][0]["text"]
    wait_for(lambda: slack_messages(outside, "#deployments", "GenesisStageChanged") and any(
        "rollback majority (80%) -> stable (0%)" in p["attachments"][0]["text"]
        for p in slack_messages(outside, "#deployments", "GenesisStageChanged")), 30, "the rollback in #deployments")
    outside.mailbox.wait_for(lambda m: "GenesisStageChanged" in m["Subject"] and "rollback" in m.get_body(("html", "plain")).get_content())
    # the page is not in #deployments: critical goes to PagerDuty and #incidents only
    assert not slack_messages(outside, "#deployments", "GenesisRolloutRolledBack")


def test_the_daily_status_arrives_by_mail_with_its_plot_and_in_slack(outside, tmp_path: Path, monkeypatch) -> None:
    config = compressed_config(["genesis"])
    release = load_release(REPO)
    release = release.model_copy(update={
        "project": config.project,
        "stages": [s.model_copy(update={"analysis": config.stage.analysis}) for s in release.stages],
    })
    email = monitoring_for(outside).alerting.email
    with live_stack(config, {"genesis": "healthy"}) as live:
        live.wait_for_full_window()
        now = datetime.now(UTC)
        state = DeployedState(stage="canary", weight=10, since=now - timedelta(seconds=40))  # past the 30 s hold
        bot = ReleaseBot(release, None, live.prom)  # type: ignore[arg-type]  # checks only, no deployer
        status = daily.compose(release, state, [], bot.check, live.prom, now, window=timedelta(seconds=10))
        paused = dataclasses.replace(state, tags={"rollout:paused": "by bob at 2026-11-30T09:00:00Z: INC-9"})
        held = daily.compose(release, paused, [], bot.check, live.prom, now, window=timedelta(seconds=10))
        markdown, png = daily.write(status, tmp_path)
        monkeypatch.setenv("SMTP_PASSWORD", SMTP_PASSWORD)
        monkeypatch.setenv("SLACK_WEBHOOK_URL", outside.slack.url + "daily")
        done = daily.deliver(status, markdown, png, email)
    assert done == ["e-mailed to team@genesis.com", "posted to Slack"]
    assert len(status.checks) >= 5  # the window's checks only, from the bot's grid
    assert all(now - timedelta(seconds=10) <= datetime.fromisoformat(c.at) <= now for c in status.checks)
    # the next action is the bot's: promote after the hold, but a pause turns it into a wait
    assert status.decision.action == "promote", status.decision.reason
    assert held.decision.action == "wait" and "paused by bob" in held.decision.reason
    mail = outside.mailbox.wait_for(lambda m: "daily status" in m["Subject"])
    assert mail["Subject"].strip().startswith("Genesis rollout daily status") and "canary (10%)" in mail["Subject"]
    (attachment,) = [part for part in mail.iter_attachments()]
    assert attachment.get_content_type() == "image/png" and attachment.get_content().startswith(b"\x89PNG")
    text = mail.get_body(("plain",)).get_content()
    assert "## Gates (canary: min / median / max)" in text and "| error_rate |" in text and "**Next action:**" in text
    posted = next(p for p in outside.slack.payloads if "daily status" in p.get("text", ""))
    assert "passed" in posted["text"]
