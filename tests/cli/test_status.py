"""`rollout status`, once, as JSON and live (`--watch`), through the CLI.

The stack is read through the REAL Automation API from the recording Pulumi CLI stand-in
(rollout/local/pulumi_standin: the Pulumi CLI cannot be installed here); Prometheus is a scripted
stand-in answering healthy values (support.hostile). The same view against a real Prometheus
and synthetic pods: tests/local/test_sandbox.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.fake_pulumi import REPO, FakePulumi, update
from support.hostile import HostilePrometheus, answering
from typer.testing import CliRunner

from rollout.cli import app

runner = CliRunner()
PAUSED = "by alice at 2026-11-04T08:00:00Z: INC-42"


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakePulumi:
    fake = FakePulumi(tmp_path, monkeypatch)
    since = datetime.now(UTC) - timedelta(hours=2)
    fake.seed(outputs={"stage": "gradual", "weight": 50},
              history=[update(6, "rollout: promote canary -> gradual: ok", since - timedelta(seconds=5), since)],
              tags={"rollout:notified": "6", "rollout:paused": PAUSED})
    return fake


def status(fake: FakePulumi, *args: str, prometheus: str | None = None):  # noqa: ANN201
    extra = ["--prometheus", prometheus] if prometheus else []
    return runner.invoke(app, ["status", "-C", str(REPO), "--pulumi-root", str(fake.root), *extra, *args],
                         catch_exceptions=False)


def test_status_json_is_one_object_with_the_whole_view(fake: FakePulumi) -> None:
    with HostilePrometheus(answering()) as prometheus:
        result = status(fake, "--json", prometheus=prometheus.url)
    assert result.exit_code == 0, result.output
    view = json.loads(result.stdout)  # one object, nothing else on stdout
    assert [(r["stage"], r["state"]) for r in view["ladder"]][1:4] == [
        ("canary", "done"), ("gradual", "current"), ("majority", "next")]
    assert view["weight"] == 50 and isinstance(view["measured_weight"]["genesis"], float)
    assert len(view["checks"]) == 3 and {c["verdict"] for c in view["checks"]} == {"pass"}  # 5-min grid, 2 h in
    assert {g["name"] for g in view["checks"][-1]["gates"]} >= {"error_rate", "p95_latency_seconds", "test_pass_rate"}
    assert view["hold_left"].startswith("1d21h5") and view["paused"] == PAUSED
    assert datetime.fromisoformat(view["next_check"]) > datetime.fromisoformat(view["now"])
    assert view["decision"]["action"] == "wait"


def test_status_without_prometheus_shows_what_the_stack_holds(fake: FakePulumi) -> None:
    result = status(fake)
    assert result.exit_code == 0, result.output
    assert "gradual 50%" in result.stdout and "measured not measured (no --prometheus)" in result.stdout
    assert f"paused: {PAUSED}" in result.stdout and "checks: none yet" in result.stdout


def test_status_watch_refreshes_the_view(fake: FakePulumi) -> None:
    with HostilePrometheus(answering()) as prometheus:
        live = status(fake, "--watch", "--count", "2", "--interval", "0.5", prometheus=prometheus.url)
        lines = status(fake, "--watch", "--json", "--count", "2", "--interval", "0.5", prometheus=prometheus.url)
    assert live.exit_code == 0, live.output
    frames = [line for line in live.stdout.splitlines() if line.startswith("stack prod")]
    assert len(frames) == 2
    # gate values in the one number format (rollout.numbers), as `rollout check` writes them: P95 0.1 s
    for text in ("stable 0%", "canary 10%", "gradual 50%", "hold left 1d21h5", "last checks", "error_rate", "pass",
                 "<= 0.1 %", "100 ms"):
        assert text in live.stdout
    assert lines.exit_code == 0
    views = [json.loads(line) for line in lines.stdout.splitlines()]
    assert len(views) == 2 and views[0]["stage"] == views[1]["stage"] == "gradual"
    assert views[1]["now"] > views[0]["now"]


def test_status_watch_on_a_terminal_redraws_in_place(fake: FakePulumi, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal the view is a Rich Live display: the next frame moves the cursor back up
    over the last one and erases it instead of scrolling."""
    import io

    from rich.console import Console

    from rollout.cli import status as status_module

    screen = io.StringIO()
    monkeypatch.setattr(status_module, "out", Console(file=screen, force_terminal=True, width=120, emoji=False))
    with HostilePrometheus(answering()) as prometheus:
        result = status(fake, "--watch", "--count", "2", "--interval", "0.5", prometheus=prometheus.url)
    assert result.exit_code == 0, result.output
    text = screen.getvalue()
    assert text.count("stages") >= 2 and "\x1b[2K" in text and "\x1b[1A" in text  # erase line, cursor up
