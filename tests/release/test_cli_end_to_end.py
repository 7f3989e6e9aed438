"""`rollout tick`, `rollout promote` and `rollout preflight` end to end, as the tick workflow
and an operator run them: the Typer CLI in-process on a project directory (the repo's
Pulumi.yaml and stage files, analysis compressed to 1 s checks and a 30 s hold), a REAL
Prometheus fed by synthetic Genesis pods, a REAL Alertmanager delivering to a webhook
receiver, and the real Automation API driving the recording Pulumi CLI stand-in
(rollout/local/pulumi_standin: the Pulumi CLI cannot be installed here).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
import yaml
from support.fake_pulumi import FakePulumi, update
from support.live import LiveStack, compressed_config, live_stack
from support.stack import compressed_project
from typer.testing import CliRunner

from rollout.cli import app
from rollout.config import load_release
from rollout.release.bot import check_release
from rollout.review.localstack import (
    ScrapeTarget,
    WebhookReceiver,
    start_alertmanager,
    start_prometheus,
    wait_for,
)

APP = "genesis"
ANALYSIS = {"checkInterval": "1s", "window": "10s", "consecutiveFailures": 3, "passingChecksToPromote": 3,
            "minCanaryRequests": 20, "hold": "30s", "progressDeadline": "5s"}
PREFIX = "urn:pulumi:prod::genesis-rollout::genesis:rollout:WeightedService$"
SERVICES = {APP: {"resources": {
    "deployments": {t: f"{PREFIX}kubernetes:apps/v1:Deployment::{APP}-{t}-deployment" for t in ("stable", "canary")},
    "routing": [f"{PREFIX}kubernetes:gateway.networking.k8s.io/v1:HTTPRoute::{APP}-httproute"],
    "flags": {t: f"{PREFIX}genesis:rollout:FeatureFlagSet$kubernetes:core/v1:ConfigMap::{APP}-{t}-flags-configmap" for t in ("stable", "canary")},
}}}


@dataclass
class Rig:
    live: LiveStack
    alertmanager: str
    receiver: WebhookReceiver


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    with ExitStack() as stack:
        receiver = stack.enter_context(WebhookReceiver())
        am = stack.enter_context(start_alertmanager({
            "route": {"receiver": "hook", "group_by": ["alertname"], "group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"},
            "receivers": [{"name": "hook", "webhook_configs": [{"url": receiver.url}]}],
        }))
        live = stack.enter_context(live_stack(compressed_config([APP]), {APP: "healthy"}))
        live.wait_for_full_window()
        yield Rig(live, am.url, receiver)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The repo's project files with every stage's analysis compressed as the live Prometheus's
    rules are, and 1 s scale-down and flags waits so the phases do not wait 30 s and 75 s."""
    return compressed_project(tmp_path, ANALYSIS)


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakePulumi:
    return FakePulumi(tmp_path, monkeypatch)


def seed_canary(fake: FakePulumi, since: datetime) -> None:
    """Deployed at canary since `since` by the bot, its promotion already told."""
    fake.seed(outputs={"stage": "canary", "weight": 10, "services": SERVICES},
              history=[update(1, "rollout: promote stable -> canary: day 1", since - timedelta(seconds=5), since)],
              tags={"rollout:notified": "1"})


def rollout(rig: Rig, project: Path, fake: FakePulumi, *args: str):  # noqa: ANN201
    common = ["-C", str(project), "--pulumi-root", str(fake.root), "--prometheus", rig.live.prometheus.url,
              "--alertmanager", rig.alertmanager, "--report-dir", str(project / "reports")]
    return CliRunner().invoke(app, [*args, *common], env={"GRAFANA_URL": "", "ROLLOUT_NOTIFY_BACKOFF": "0.1"})


def wait_for_checks(rig: Rig, project: Path, profile: str, verdict: str) -> None:
    """The canary's profile set, then until the last three 1 s checks all give `verdict`."""
    rig.live.workloads[(APP, "canary")].set_profile(profile)
    release = load_release(project)
    stage = release.stage("canary")

    def settled() -> bool:
        now = datetime.now(timezone.utc)
        return all(check_release(release, rig.live.prom, stage, now - timedelta(seconds=back)).verdict == verdict
                   for back in (0, 1, 2))

    wait_for(settled, 45, f"three {verdict} checks in a row", interval=0.5)


def ups(fake: FakePulumi) -> list[tuple[str, str, list[str]]]:
    """(config file, message, targets) of every `pulumi up`, in order."""
    out = []
    for call in fake.runs_of("up"):
        argv = call["argv"]
        targets = [argv[i + 1] for i, a in enumerate(argv) if a == "--target"]
        out.append((argv[argv.index("--config-file") + 1], argv[argv.index("--message") + 1], targets))
    return out


def test_tick_promotes_a_healthy_canary_in_phases_and_tells_everyone(rig: Rig, project: Path, fake: FakePulumi) -> None:
    wait_for_checks(rig, project, "healthy", "pass")
    seed_canary(fake, datetime.now(timezone.utc) - timedelta(seconds=60))

    result = rollout(rig, project, fake, "tick", "--json")

    assert result.exit_code == 0, result.output
    outcome = json.loads(result.stdout)
    assert outcome["decision"]["action"] == "promote" and [c["verdict"] for c in outcome["checks"]] == ["pass"] * 3
    assert outcome["notified"] is True
    applied = ups(fake)
    # the canary scales up with its new flags first (targeted), then, after the flags wait, the
    # untargeted update moves traffic and the rest
    resources = SERVICES[APP]["resources"]
    assert [(f, t) for f, _, t in applied] == [
        ("Pulumi.gradual.yaml", [resources["deployments"]["canary"], resources["flags"]["canary"]]),
        ("Pulumi.gradual.yaml", []),
    ]
    assert [m.split(":")[1].strip() for _, m, _ in applied] == ["promote canary -> gradual [1/2 scale-up]",
                                                                "promote canary -> gradual [2/2 shift]"]
    assert fake.state()["outputs"]["stage"] == "gradual"
    notice = rig.receiver.wait_for_alert(lambda a: a["labels"].get("alertname") == "GenesisStageChanged"
                                         and a["labels"].get("action") == "promote")
    assert notice["labels"]["event"] == "stage-change"
    assert list((project / "reports").glob("*promote-canary-to-gradual.md"))
    assert fake.state()["tags"]["rollout:notified"] == "3"  # the post-apply work is recorded as done


def test_tick_rolls_back_a_failing_canary_pages_and_reports(rig: Rig, project: Path, fake: FakePulumi) -> None:
    wait_for_checks(rig, project, "bad", "fail")
    try:
        seed_canary(fake, datetime.now(timezone.utc) - timedelta(seconds=20))  # mid-hold: rollback does not wait for it

        result = rollout(rig, project, fake, "tick", "--json")
    finally:
        rig.live.workloads[(APP, "canary")].set_profile("healthy")

    assert result.exit_code == 0, result.output
    outcome = json.loads(result.stdout)
    assert outcome["decision"]["action"] == "rollback" and outcome["notified"] is True
    resources = SERVICES[APP]["resources"]
    # traffic leaves first (targeted), the canary shrinks (and takes the stable flags) afterwards
    assert [(f, sorted(t)) for f, _, t in ups(fake)] == [
        ("Pulumi.stable.yaml", sorted(resources["routing"])),
        ("Pulumi.stable.yaml", []),
    ]
    assert fake.state()["outputs"]["stage"] == "stable"
    page = rig.receiver.wait_for_alert(lambda a: a["labels"].get("alertname") == "GenesisRolloutRolledBack")
    assert page["labels"]["severity"] == "critical"
    [report] = (project / "reports").glob("*rollback-canary-to-stable.md")
    assert "error_rate" in report.read_text()


def test_promote_by_hand_applies_the_next_stage_whatever_the_gates_say(rig: Rig, project: Path, fake: FakePulumi) -> None:
    seed_canary(fake, datetime.now(timezone.utc) - timedelta(seconds=5))  # the hold has not run: a human may still go

    result = rollout(rig, project, fake, "promote", "--reason", "CAB-118 approved early")

    assert result.exit_code == 0, result.output
    messages = [m for _, m, _ in ups(fake)]
    assert messages and all("promote canary -> gradual" in m and m.endswith(": CAB-118 approved early") for m in messages)
    assert fake.state()["outputs"]["stage"] == "gradual"
    # Alertmanager holds the notice (the webhook may have heard of this promotion already, from
    # an earlier test: same labels, one notification per repeat interval)
    notices = httpx.get(f"{rig.alertmanager}/api/v2/alerts", params={"filter": 'alertname="GenesisStageChanged"'}, timeout=5).json()
    assert any(n["labels"]["stage"] == "gradual" and "CAB-118 approved early" in json.dumps(n["annotations"]) for n in notices)


def test_promote_past_the_last_stage_is_refused_and_applies_nothing(rig: Rig, project: Path, fake: FakePulumi) -> None:
    since = datetime.now(timezone.utc) - timedelta(hours=1)
    fake.seed(outputs={"stage": "full", "weight": 100}, history=[update(1, "rollout: promote majority -> full: day 7", since, since)])

    result = rollout(rig, project, fake, "promote")

    assert result.exit_code == 3, result.output
    assert "'full' is the last stage: nothing to promote to" in result.output
    assert ups(fake) == []


def test_preflight_is_no_go_when_the_rules_are_not_loaded_or_a_critical_alert_fires(rig: Rig) -> None:
    """A Prometheus that scrapes Genesis but never got our rule file, while a cluster alert of
    severity critical fires: two no-gos, each naming what is wrong; the rest stays go."""
    firing = yaml.safe_dump({"groups": [{"name": "cluster", "rules": [
        {"alert": "KubeNodeNotReady", "expr": "vector(1)", "labels": {"severity": "critical"}}]}]})
    targets = [ScrapeTarget(w.address, {"namespace": "genesis", "app": APP, "track": track})
               for (app, track), w in rig.live.workloads.items()]
    with start_prometheus(rules=[firing], targets=targets) as bare:
        from rollout.release.prometheus import Prometheus

        with Prometheus(bare.url) as prom:
            wait_for(lambda: prom.firing_alerts() and prom.series_exists('genesis_request_duration_seconds_count{track="stable"}'),
                     30, "the critical alert firing and the stable track scraped")
        result = CliRunner().invoke(app, ["preflight", "--json", "--prometheus", bare.url, "--alertmanager", rig.alertmanager,
                                          "--skip", "grafana"])
    assert result.exit_code == 1, result.output
    items = {item["name"]: item for item in json.loads(result.stdout)}
    assert not items["rules loaded"]["ok"]
    assert "missing recording rules: " in items["rules loaded"]["detail"]
    assert "namespace_app_track:genesis_error_rate:weighted_avg" in items["rules loaded"]["detail"]
    assert not items["no critical alert"]["ok"] and "KubeNodeNotReady" in items["no critical alert"]["detail"]
    assert all(items[name]["ok"] for name in ("stage files", "prometheus", "alertmanager", "stable metrics"))
