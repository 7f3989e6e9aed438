"""The `rollout` command line: the commands a platform engineer types, in-process through Typer.

`check` runs against a REAL Prometheus fed by a synthetic Genesis pod with the repo's own stage
files; render and plan run the real program under the Pulumi mock runtime (no CLI here).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterator

import pytest
import yaml
from support import REPO_ROOT as REPO
from support.live import LiveStack, compressed_config, live_stack
from support.stack import copy_project, edit_stage_file
from typer.testing import CliRunner

from rollout.cli import app
from rollout.review.localstack import free_port, wait_for

runner = CliRunner()


def rollout(*args: str, env: dict[str, str] | None = None):  # noqa: ANN201
    return runner.invoke(app, ["--help"] if not args else list(args), env=env, catch_exceptions=False)


@pytest.fixture(scope="module")
def live() -> Iterator[LiveStack]:
    with live_stack(compressed_config(["genesis"]), {"genesis": "healthy"}) as stack:
        stack.wait_for_full_window()
        yield stack


def check_json(live: LiveStack) -> tuple[int, dict]:
    result = rollout("check", "--stage", "canary", "--json", "-C", str(REPO), env={"PROMETHEUS_URL": live.prometheus.url})
    return result.exit_code, json.loads(result.stdout)


def test_check_passes_fails_and_holds_with_the_documented_exit_codes(live: LiveStack) -> None:
    canary = live.workloads[("genesis", "canary")]
    code, report = check_json(live)
    assert (code, report["verdict"]) == (0, "pass"), report["reason"]
    assert report["stage"] == "canary"
    assert {g["name"] for g in report["gates"]} == {
        "error_rate", "p95_latency_seconds", "test_pass_rate", "pipelex_success_rate",
        "spice_tasks_per_minute", "fallback_rate", "canary_availability",
    }
    assert all({"name", "value", "threshold", "ok"} <= set(g) for g in report["gates"])

    canary.set_profile("bad")
    code, report = wait_for(lambda: (lambda r: r if r[0] == 1 else None)(check_json(live)), 30, "a failing check")
    assert report["verdict"] == "fail"
    failed = {g["name"] for g in report["gates"] if not g["ok"]}
    assert "test_pass_rate" in failed and "critical" in report["reason"]

    canary.set_profile("silent")  # no samples at all: never a pass
    def silent_check() -> tuple[int, dict] | None:
        code, report = check_json(live)
        assert code != 0, f"a pass while the canary goes silent: {report}"
        own = [g for g in report["gates"] if g["name"] != "canary_availability"]  # its pods stay ready
        return (code, report) if all(g["value"] is None for g in own) else None

    code, report = wait_for(silent_check, 30, "a check with no canary series left")
    assert (code, report["verdict"]) == (2, "hold")
    canary.set_profile("healthy")


def test_check_without_prometheus_is_an_error_never_a_verdict() -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    result = rollout("check", "--stage", "canary", "--prometheus", closed, "-C", str(REPO))
    assert result.exit_code == 3
    assert "unreachable" in result.stderr and "no verdict" in result.stderr


def _judged_project(tmp_path: Path) -> Path:
    """The repo with the judge on errorRate and the live stack's 1 s checks in Pulumi.canary.yaml."""
    project = copy_project(tmp_path)
    data = yaml.safe_load((project / "Pulumi.canary.yaml").read_text())["config"]
    edit_stage_file(project, "canary", "analysis",
                    {**data["genesis-rollout:analysis"], "checkInterval": "1s", "window": "10s"})
    gates = data["genesis-rollout:gates"]
    edit_stage_file(project, "canary", "gates", {**gates, "errorRate": {**gates["errorRate"], "judge": {"tolerance": 0.5}}})
    return project


def test_check_since_the_stage_start_shows_the_judges_evidence(live: LiveStack, tmp_path: Path) -> None:
    project = _judged_project(tmp_path)
    env = {"PROMETHEUS_URL": live.prometheus.url}
    since = str(int(time.time()) - 8)
    result = rollout("check", "--stage", "canary", "--json", "--since", since, "-C", str(project), env=env)
    report = json.loads(result.stdout)
    evidence = {g["name"]: g["evidence"] for g in report["gates"]}
    judged = evidence.pop("error_rate")
    assert judged is not None and all(value is None for value in evidence.values())
    assert judged["intervals"] >= 5 and judged["threshold"] == pytest.approx(1 / judged["alpha"])
    assert not judged["regression"] and judged["source"].startswith("genesis_request_errors_total")

    table = rollout("check", "--stage", "canary", "--since", since, "-C", str(project), env=env)
    assert "judge" in table.stdout and f"/ {judged['threshold']:g}" in table.stdout

    without = rollout("check", "--stage", "canary", "-C", str(project), env=env)
    assert "no evidence without --since" in without.stderr and f"/ {judged['threshold']:g}" not in without.stdout

    bad = rollout("check", "--stage", "canary", "--since", "yesterday", "-C", str(project), env=env)
    assert bad.exit_code == 3 and "--since: 'yesterday' is neither RFC 3339" in bad.stderr


def test_check_of_an_unknown_stage_is_refused() -> None:
    result = rollout("check", "--stage", "canry", "--prometheus", "http://127.0.0.1:9", "-C", str(REPO))
    assert result.exit_code == 3
    assert "unknown stage 'canry'" in result.stderr


def test_plan_canary_gradual_shows_only_weights_replicas_and_flags() -> None:
    result = rollout("plan", "canary", "gradual", "-C", str(REPO))
    assert result.exit_code == 0
    changed = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("~ ")]
    assert sorted(changed) == ["genesis-canary-deployment", "genesis-canary-flags-configmap", "genesis-httproute"]
    markdown = rollout("plan", "canary", "gradual", "--markdown", "-C", str(REPO)).stdout
    assert markdown.lstrip().startswith("#") and "| " in markdown


def test_render_refuses_a_bad_stage_file_before_writing(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    for path in REPO.glob("Pulumi*.yaml"):
        (project / path.name).write_text(path.read_text())
    stage = project / "Pulumi.gradual.yaml"
    stage.write_text(stage.read_text().replace("weight: 50", "weight: 150"))
    result = rollout("render", "--stage", "gradual", "--out", str(tmp_path / "out"), "-C", str(project))
    assert result.exit_code == 3
    assert "Pulumi.gradual.yaml" in result.stderr and "genesis-rollout:stage.weight" in result.stderr
    assert not (tmp_path / "out").exists()


def test_preflight_reports_every_no_go_and_its_reason(live: LiveStack) -> None:
    result = rollout(
        "preflight", "--json", "-C", str(REPO), "--prometheus", live.prometheus.url,
        "--alertmanager", f"http://127.0.0.1:{free_port()}", "--skip", "grafana",
    )
    items = {item["name"]: item for item in json.loads(result.stdout)}
    assert result.exit_code == 1  # Alertmanager is down: no-go
    assert items["stage files"]["ok"] and items["prometheus"]["ok"] and items["rules loaded"]["ok"]
    assert items["stable metrics"]["ok"]
    assert not items["alertmanager"]["ok"] and "unreachable" in items["alertmanager"]["detail"]
    assert items["grafana"]["ok"] and "skipped on request" in items["grafana"]["detail"]


def test_rollback_by_hand_applies_stable_and_writes_the_incident_report(
    live: LiveStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the real Automation API; the Pulumi CLI is the recording stand-in (not installable here)."""
    from datetime import datetime, timedelta, timezone

    from support.fake_pulumi import FakePulumi, update

    fake = FakePulumi(tmp_path, monkeypatch)
    since = datetime.now(timezone.utc) - timedelta(hours=1)
    fake.seed(outputs={"stage": "canary", "weight": 10},
              history=[update(1, "rollout: promote stable -> canary: day 1", since, since)])
    common = ["-C", str(REPO), "--pulumi-root", str(fake.root), "--prometheus", live.prometheus.url]

    status = rollout("status", *common, "--json")
    assert status.exit_code == 0, status.stderr
    assert json.loads(status.stdout)["stage"] == "canary"

    report = rollout("report", *common, "--report-dir", str(tmp_path / "stage-reports"))
    assert report.exit_code == 0, report.stderr
    stage_report = next((tmp_path / "stage-reports").glob("*-status-canary-to-canary.md"))
    assert "| error_rate |" in stage_report.read_text() and stage_report.with_suffix(".png").exists()

    result = rollout("rollback", "--reason", "on-call decision", *common, "--report-dir", str(tmp_path / "reports"))
    assert result.exit_code == 0, result.stderr
    ups = fake.runs_of("up")
    assert len(ups) == 1
    argv = ups[0]["argv"]
    assert argv[argv.index("--config-file") + 1] == "Pulumi.stable.yaml"
    assert argv[argv.index("--message") + 1] == "rollout: rollback canary -> stable: on-call decision"
    reports = list((tmp_path / "reports").glob("*-rollback-canary-to-stable.md"))
    assert len(reports) == 1 and "on-call decision" in reports[0].read_text()


def test_watch_stops_after_the_ticks_it_was_given(live: LiveStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`watch --max-ticks 1` is one tick. The canary's 48 h hold has run, but with the real 5 min
    interval the checks 5 and 10 minutes ago fall before this Prometheus had data: they hold,
    so the bot waits instead of promoting on missing data."""
    from datetime import datetime, timedelta, timezone

    from support.fake_pulumi import FakePulumi, update

    fake = FakePulumi(tmp_path, monkeypatch)
    since = datetime.now(timezone.utc) - timedelta(hours=49)
    fake.seed(outputs={"stage": "canary", "weight": 10},
              history=[update(1, "rollout: promote stable -> canary: day 1", since, since)])
    live.workloads[("genesis", "canary")].set_profile("healthy")
    result = rollout(
        "watch", "--max-ticks", "1", "-C", str(REPO), "--pulumi-root", str(fake.root),
        "--prometheus", live.prometheus.url, "--report-dir", str(tmp_path / "reports"),
    )
    assert result.exit_code == 0, result.stderr
    assert "checks: hold hold " in result.stdout  # 10 and 5 minutes ago: before any data
    assert "decision: wait" in result.stdout
    assert fake.runs_of("up") == []


def test_tick_pushes_the_bots_metrics_to_a_real_pushgateway(live: LiveStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`rollout tick` with PUSHGATEWAY_URL: the newest tick's stage, decision and last-check time
    land in a real Pushgateway (Debian prometheus-pushgateway), grouped by job and stack; a real
    Prometheus scraping it sees the dead man's switch metric fresh. Pulumi CLI: the stand-in."""
    import time as clock
    from datetime import datetime, timedelta, timezone

    import httpx
    from support.fake_pulumi import FakePulumi, update

    from rollout.review.localstack import (
        ScrapeTarget,
        start_prometheus,
        start_pushgateway,
    )

    fake = FakePulumi(tmp_path, monkeypatch)
    since = datetime.now(timezone.utc) - timedelta(hours=1)
    fake.seed(outputs={"stage": "stable", "weight": 0},
              history=[update(1, "rollout: apply -> stable: baseline", since, since)])
    with start_pushgateway() as gateway:
        monkeypatch.setenv("PUSHGATEWAY_URL", gateway.url)
        before = clock.time()
        result = rollout("tick", "-C", str(REPO), "--pulumi-root", str(fake.root), "--prometheus", live.prometheus.url,
                         "--report-dir", str(tmp_path / "reports"))
        assert result.exit_code == 0, result.stderr
        text = httpx.get(f"{gateway.url}/metrics", timeout=5).text
        assert 'rollout_stage_info{instance="",job="genesis-rollout-bot",rollout="genesis-rollout",stack="prod",stage="stable"} 1' in text
        assert 'rollout_decision{action="wait",instance="",job="genesis-rollout-bot",rollout="genesis-rollout",stack="prod"} 1' in text
        line = next(line for line in text.splitlines() if line.startswith("rollout_last_successful_check_timestamp_seconds{"))
        assert before <= float(line.rsplit(" ", 1)[1]) <= clock.time()
        host = gateway.url.removeprefix("http://")
        with start_prometheus(targets=[ScrapeTarget(host, {})]) as prometheus:
            from rollout.release.prometheus import Prometheus

            with Prometheus(prometheus.url) as prom:
                age = wait_for(lambda: prom.value('time() - max(rollout_last_successful_check_timestamp_seconds{rollout="genesis-rollout"})'),
                               30, "Prometheus scraping the Pushgateway")
        assert 0 <= age < 60


def test_a_tick_refused_by_a_locked_stack_pushes_the_lock_for_genesis_stack_locked(
    live: LiveStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The GitHub fallback keeps no process between ticks: a tick whose apply the stack lock
    refuses pushes rollout_stack_locked 1 to a real Pushgateway before exiting 3, so the
    GenesisStackLocked rule (a `for:` over the pushed gauge) still pages. Pulumi CLI: the stand-in
    with a lock left by a dead update, and a stage change pending behind it."""
    from datetime import datetime, timedelta, timezone

    import httpx
    from support.fake_pulumi import FakePulumi, update

    from rollout.review.localstack import start_pushgateway

    fake = FakePulumi(tmp_path, monkeypatch)
    since = datetime.now(timezone.utc) - timedelta(hours=1)
    fake.seed(outputs={"stage": "stable", "weight": 0},
              history=[update(2, "rollout: rollback canary -> stable [1/2 shift]: error rate", since, since),
                       update(1, "rollout: promote stable -> canary: day 1", since - timedelta(hours=2), since - timedelta(hours=2))],
              lock="diy")
    with start_pushgateway() as gateway:
        monkeypatch.setenv("PUSHGATEWAY_URL", gateway.url)
        result = rollout("tick", "-C", str(REPO), "--pulumi-root", str(fake.root), "--prometheus", live.prometheus.url,
                         "--report-dir", str(tmp_path / "reports"))
        assert result.exit_code == 3, result.output
        assert "locked" in result.stderr
        text = httpx.get(f"{gateway.url}/metrics", timeout=5).text
    assert 'rollout_stack_locked{instance="",job="genesis-rollout-bot",rollout="genesis-rollout",stack="prod"} 1' in text
    assert fake.state()["outputs"]["stage"] == "stable" and fake.state()["lock"] == "diy"
